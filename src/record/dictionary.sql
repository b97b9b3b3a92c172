DROP TABLE channels;
UPDATE version SET version=0;
DROP TABLE forwarded_payments;
UPDATE payments SET partid = 0;
INSERT INTO version VALUES (0);
UPDATE invoices SET expiry_time=0;
DELETE FROM channels WHERE state=0
DELETE FROM blocks WHERE height > 0
UPDATE channel_htlcs SET partid = 0;
ALTER TABLE invoices ADD bolt11 TEXT;
ALTER TABLE payments ADD bolt11 TEXT;
ALTER TABLE payments ADD failnode BLOB;
CREATE TABLE version (version INTEGER);
DELETE FROM blocks WHERE height IS NULL;
ALTER TABLE vars ADD COLUMN blobval BLOB
INSERT INTO db_upgrades VALUES (-0, '');
ALTER TABLE payments ADD failupdate BLOB;
ALTER TABLE payments ADD faildetail TEXT;
ALTER TABLE payments ADD failcode INTEGER;
ALTER TABLE payments ADD failchannel TEXT;
ALTER TABLE invoices ADD description TEXT;
ALTER TABLE payments ADD description TEXT;
ALTER TABLE outputs ADD scriptpubkey BLOB;
ALTER TABLE transactions ADD type INTEGER;
ALTER TABLE vars ADD COLUMN intval INTEGER
UPDATE payments SET total_msat = msatoshi;
ALTER TABLE invoices ADD pay_index INTEGER;
ALTER TABLE payments ADD failindex INTEGER;
ALTER TABLE outputs ADD COLUMN peer_id BLOB;
ALTER TABLE channels_new RENAME TO channels;
ALTER TABLE invoices ADD expiry_time INTEGER;
ALTER TABLE payments ADD failonionreply BLOB;
UPDATE payments SET msatoshi_sent = msatoshi;
ALTER TABLE channels ADD feerate_ppm INTEGER;
ALTER TABLE channel_htlcs ADD partid INTEGER;
UPDATE channels SET STATE = 0 WHERE state > 0;
ALTER TABLE payments ADD faildestperm INTEGER;
ALTER TABLE channels ADD feerate_base INTEGER;
UPDATE invoices SET pay_index=id WHERE state=0;
ALTER TABLE payments ADD msatoshi_sent INTEGER;
ALTER TABLE channels ADD last_sent_commit BLOB;
ALTER TABLE payments ADD faildirection INTEGER;
ALTER TABLE channels ADD first_blocknum INTEGER;
ALTER TABLE invoices ADD paid_timestamp INTEGER;
ALTER TABLE transactions ADD channel_id INTEGER;
ALTER TABLE channel_htlcs ADD localfailmsg BLOB;
ALTER TABLE channel_htlcs ADD we_filled INTEGER;
ALTER TABLE payments ADD COLUMN route_nodes BLOB;
ALTER TABLE outputs ADD COLUMN channel_id INTEGER;
ALTER TABLE payments ADD COLUMN path_secrets BLOB;
ALTER TABLE channels ADD remote_ann_node_sig BLOB;
INSERT INTO vars (name, blobval) VALUES ('', );
CREATE INDEX channel_idx ON htlc_sigs (channelid);
CREATE INDEX utxoset_spend ON utxoset (spendheight)
ALTER TABLE channel_htlcs ADD received_time INTEGER
ALTER TABLE payments ADD COLUMN route_channels BLOB;
ALTER TABLE channels ADD msatoshi_to_us_min INTEGER;
ALTER TABLE channels ADD msatoshi_to_us_max INTEGER;
ALTER TABLE forwarded_payments ADD failcode INTEGER;
CREATE INDEX utxoset_spend ON utxoset (spendheight);
ALTER TABLE outputs ADD COLUMN commitment_point BLOB;
ALTER TABLE channels ADD remote_ann_bitcoin_sig BLOB;
UPDATE invoices SET msatoshi_received=0 WHERE state=0;
ALTER TABLE payments ADD COLUMN payment_preimage BLOB;
ALTER TABLE channels ADD min_possible_feerate INTEGER;
ALTER TABLE channels ADD max_possible_feerate INTEGER;
UPDATE channels SET feerate_base = 0, feerate_ppm = 0;
UPDATE payments   SET faildetail = '' WHERE status = 0;
ALTER TABLE channels ADD COLUMN last_was_revoke INTEGER;
ALTER TABLE forwarded_payments ADD received_time INTEGER
ALTER TABLE forwarded_payments ADD resolved_time INTEGER
UPDATE shachains SET num_valid=0, min_index=0 WHERE id=0
INSERT INTO vars (name, val, intval) VALUES ('', '', 0);
ALTER TABLE invoices ADD COLUMN features BLOB DEFAULT '';
ALTER TABLE invoices ADD COLUMN msatoshi_received INTEGER;
ALTER TABLE channels ADD future_per_commitment_point BLOB;
ALTER TABLE channels ADD shutdown_scriptpubkey_local BLOB;
ALTER TABLE outputs ADD reserved_til INTEGER DEFAULT NULL;
UPDATE vars SET blobval = CAST(val AS BLOB) WHERE name = ''
ALTER TABLE channels ADD full_channel_id BLOB DEFAULT NULL;
INSERT INTO shachains (min_index, num_valid) VALUES (0, 0);
INSERT INTO channels_new SELECT *, NULL, NULL FROM channels;
ALTER TABLE channels ADD remote_upfront_shutdown_script BLOB;
ALTER TABLE channels ADD in_payments_offered INTEGER DEFAULT 0;
ALTER TABLE channels ADD in_msatoshi_offered INTEGER DEFAULT 0;
ALTER TABLE channels ADD our_funding_satoshi INTEGER DEFAULT 0;
ALTER TABLE channels ADD out_payments_offered INTEGER DEFAULT 0;
ALTER TABLE channels ADD out_msatoshi_offered INTEGER DEFAULT 0;
ALTER TABLE outputs ADD option_anchor_outputs INTEGER DEFAULT 0;
ALTER TABLE forwarded_payments_new RENAME TO forwarded_payments;
ALTER TABLE channels ADD in_payments_fulfilled INTEGER DEFAULT 0;
ALTER TABLE channels ADD in_msatoshi_fulfilled INTEGER DEFAULT 0;
ALTER TABLE channels ADD out_payments_fulfilled INTEGER DEFAULT 0;
ALTER TABLE channels ADD out_msatoshi_fulfilled INTEGER DEFAULT 0;
UPDATE outputs SET confirmation_height = 0 WHERE prev_out_tx = 
UPDATE channels SET min_possible_feerate=0, max_possible_feerate=0;
INSERT INTO channels (peer_id, first_blocknum, id) VALUES (0, 0, 0);
CREATE INDEX short_channel_id ON utxoset (blockheight, txindex, outnum)
UPDATE invoices   SET state = 0 WHERE state = 0   AND expiry_time <= 0;
UPDATE shachain_known SET idx=0, hash= WHERE shachain_id=0 AND pos=0
UPDATE channels SET first_blocknum=0 WHERE short_channel_id IS NOT NULL;
UPDATE invoices   SET paid_timestamp = strftime('', '') WHERE state = 0;
UPDATE vars SET intval = CAST(val AS INTEGER) WHERE name IN ('', '', '')
ALTER TABLE channels ADD COLUMN option_anchor_outputs INTEGER DEFAULT 0;
CREATE INDEX short_channel_id ON utxoset (blockheight, txindex, outnum);
CREATE TABLE vars (  name VARCHAR(0), val VARCHAR(0), PRIMARY KEY (name));
ALTER TABLE channels ADD COLUMN option_static_remotekey INTEGER DEFAULT 0;
UPDATE forwarded_payments SET received_time=0 WHERE received_time IS NULL;
INSERT INTO forwarded_payments_new SELECT *, NULL FROM forwarded_payments;
UPDATE channels SET our_funding_satoshi = funding_satoshi WHERE funder = 0;
UPDATE channels SET shutdown_keyidx_local=0 WHERE shutdown_keyidx_local = -0;
DELETE FROM blocks WHERE height > (SELECT MIN(first_blocknum) FROM channels);
INSERT INTO shachain_known (shachain_id, pos, idx, hash) VALUES (0, 0, 0, );
UPDATE channels SET  remote_ann_node_sig=,  remote_ann_bitcoin_sig= WHERE id=0
INSERT INTO transactions (  id, blockheight, txindex, rawtx) VALUES (, 0, 0, );
UPDATE channel_htlcs SET localfailmsg= WHERE malformed_onion != 0 AND direction = 0;
UPDATE outputs SET status=0, reserved_til=174WHERE prev_out_tx= AND prev_out_index=0
UPDATE outputs SET status=0, reserved_til=246WHERE prev_out_tx= AND prev_out_index=0
INSERT OR IGNORE INTO blocks (height) VALUES ((SELECT MIN(first_blocknum) FROM channels));
UPDATE payments SET failchannel = REPLACE(failchannel, '', '') WHERE failchannel IS NOT NULL;
UPDATE outputs SET spend_height = 0,  status = 0 WHERE prev_out_tx =  AND prev_out_index = 0
ALTER TABLE outputs ADD COLUMN spend_height INTEGER REFERENCES blocks(height) ON DELETE SET NULL;
ALTER TABLE outputs ADD COLUMN confirmation_height INTEGER REFERENCES blocks(height) ON DELETE SET NULL;
UPDATE channels   SET msatoshi_to_us_min = msatoshi_local     , msatoshi_to_us_max = msatoshi_local     ;
UPDATE channels SET short_channel_id = REPLACE(short_channel_id, '', '') WHERE short_channel_id IS NOT NULL;
UPDATE payments   SET path_secrets = NULL     , route_nodes = NULL     , route_channels = NULL WHERE status <> 0;
INSERT INTO vars(name, val)  VALUES('',     COALESCE((SELECT MAX(pay_index) FROM invoices WHERE state=0), 0) + 0  );
INSERT INTO payments SELECT id, timestamp, status, payment_hash, destination, msatoshi FROM temp_payments WHERE direction=0;
INSERT INTO utxoset ( txid, outnum, blockheight, spendheight, txindex, scriptpubkey, satoshis) VALUES(, 0, 0, NULL, 0, , 0);
INSERT INTO channel_feerates(channel_id, hstate, feerate_per_kw) SELECT id, 0, local_feerate_per_kw FROM channels WHERE funder = 0;
INSERT INTO channel_feerates(channel_id, hstate, feerate_per_kw) SELECT id, 0, remote_feerate_per_kw FROM channels WHERE funder = 0;
CREATE TABLE transactions (  id BLOB, blockheight INTEGER REFERENCES blocks(height) ON DELETE SET NULL, txindex INTEGER, rawtx BLOB, PRIMARY KEY (id));
CREATE TABLE transaction_annotations (  txid BLOB, idx INTEGER, location INTEGER, type INTEGER, channel INTEGER REFERENCES channels(id), UNIQUE(txid, idx));
CREATE TABLE outputs (  prev_out_tx BLOB, prev_out_index INTEGER, value INTEGER, type INTEGER, status INTEGER, keyindex INTEGER, PRIMARY KEY (prev_out_tx, prev_out_index));
DELETE FROM utxoset WHERE blockheight IN (  SELECT DISTINCT(blockheight)  FROM utxoset LEFT OUTER JOIN blocks on (blockheight = blocks.height)   WHERE blocks.hash IS NULL);
CREATE TABLE payments (  id INTEGER,  timestamp INTEGER,  status INTEGER,  payment_hash BLOB,  destination BLOB,  msatoshi INTEGER,  PRIMARY KEY (id),  UNIQUE (payment_hash));
INSERT INTO channel_feerates(channel_id, hstate, feerate_per_kw) SELECT id, 0, local_feerate_per_kw FROM channels WHERE funder = 0 and local_feerate_per_kw != remote_feerate_per_kw;
INSERT INTO channel_feerates(channel_id, hstate, feerate_per_kw) SELECT id, 0, remote_feerate_per_kw FROM channels WHERE funder = 0 and local_feerate_per_kw != remote_feerate_per_kw;
CREATE TABLE invoices (  id INTEGER,  state INTEGER,  msatoshi INTEGER,  payment_hash BLOB,  payment_key BLOB,  label TEXT,  PRIMARY KEY (id),  UNIQUE (label),  UNIQUE (payment_hash));
CREATE TABLE transactions (  id BLOB, blockheight INTEGER REFERENCES blocks(height) ON DELETE SET NULL, txindex INTEGER, rawtx BLOB, type INTEGER, channel_id INTEGER, PRIMARY KEY (id));
CREATE TABLE payments (  id INTEGER,  timestamp INTEGER,  status INTEGER,  payment_hash BLOB,  direction INTEGER,  destination BLOB,  msatoshi INTEGER,  PRIMARY KEY (id),  UNIQUE (payment_hash));
label #0''lnbc1tllxppt9tvfar0umr2vae0w8ttsp30cwl3hf4mupvxkw5wg3zy3uhtl5zf3tw3k29xw2a0tz66879naypecnf9jmsr9qn372lukyjg4rlqtrpz94ueazl4sqkd0jfgcwkv8jt7tjqvp2nsrthu4wgwscv3jhrkdpnhegara4tuwehz6t6dca920qp9lpcrw3dn7rxqjdxq3l''multi
label #0''lnbc14g9fqa7su4j2lurzufftruml7zcshxh8waqgeder9hkhp6a6xl6n5pycmzhtg49s67zeec46769n2zfceqng32uw3m6y96zf89ylram5udp6vv04wzhrws39g26dnpjgv0d8f65jw9ugf0c4d6696fcvhl5jfpp8f87nmf5l7aj7x4x5snxkzya482m8h340wxmjlqfcn6pnps''multi
label #0''lnbc1ch6qnw8yrl7vx809sqg6f3j5nm4yngmk5c8e9gxz054gwht6xz3w76el62gtz95thmc9p8j8kfyp8f7407wcgh4qadyvrlt78sqc3nhefkqcf255luyd32wsdkhp9y3m5m85g9du9u4uh7wcuaeat8lvwws9qtrnzpqey4ydn5ufz4atvkrr4vsjpsn7fjc7upx6zaheyx8uqwm9r''multi
label #0''lnbc1326wvu8ma49mdgnfw8zal7ge6ctahwzndqk7c86v84lheg2wv0rc6hgf48succdgw2qgm2m2wvknltatpejhun0xnfc2rqx8e9q5zfwplxrfat5h34ayunc867slj3pw8a5c6hqceswph7uq0cjywkfhxwg3qr2rxq7dv4fug8g3w6k34het975ujkyaae6n3t3erdgsz24l922s62s''multi
label #0''lnbc1dq508qtre33s05px37dn33n0lnsh6hq7427ekpjmc7nfydtcdxkd0m2emzvaqsl4leex2mpl20rfg6e2z4n9d0yu77tpmk7tharcjldheulapegu075ydqa4xz3z4kh38el7p8hvq695ylwru4vunvuq9jkh6jtez0hag36ryyaerqdnj7kpx3hqkpsuxhrv96l32dfuykk74f6s0ac0''multi
label #0''lnbc1ls7pzqad5gpd5yvm78g53nz0ku50e6x2c73vyg7sr9e57ujrq9hnsa3x36tsemcd0tl9tfn397w48fry8nes0t472gvdm3dtxpug7q22emzhr2qps7kyjzqap5my8pg76ut86qu6f6p5s2m6s4lurmh0ellk8l6xrapvl6nf34wf6eh3nvayp4uu8gquq9c7es2dgdgxedveq6pxnzn4dv''multi
label #0''lnbc1u3n7h5q5q36jffdjtc0sjuuuvx5p40fwg64c5t6s33y0zqxz72ldzktjguwf3ls735lacnc3ca6xd278mktftvp9x0shcc53d5s9602730u27fyq5wk56h2mgjmx8rays9kva7nz0wr6gnkpg79zwrl5nevz5s8n5wvn990a9kuzzvg3l7drumt2g8t2yexulykqmvxufq89fxlzcz3qjm''multi
label #0''lnbc10v3wnq0shnknzs6mkmy2fapxjkqq6hpvgfzaa6uxhqe3d5w8djvkc3jj9fdr2elda9vlsmz79urlm3ygrxtdpuw2wh6syll7kr0m4yfxhamz72u0wend834fvw92gs7xzvf06a26hyv4z47ts4473l36c0llecmr3a6d86x9cjway8lk9mucz9rw6e6j586jx5et02rlnw5s0ycu0p0trdelvsu''multi
label #0''lnbc1fevp0jqwqfn45r8akx6d0mhuq746sv2zhpka7qzgn5cnv03u40jvwprsrmma78ty43503fvtjqq5ncqc8tp2sh9y7zxvwk8zgwnqgdextcf7z8k9drqgaqlt4636hyxc25m8vr2h34har5cem9qqvznwlk4fpk2ux5cyl574a47hfk8epzqn262s4r6g4veavet8vus6kfkxwzqw5mvx88yll3rllm058244''multi
label #0''lnbc1n26zdelwkmylu0ar20p7jkyf9nl3dyrypztrfq299keat2s80qu2v8mt69p7t28zhpynvvzvqxpx8sj3tcyh5a9gxrtdra5mt3lunf7f29mhhvjzz8efwz0q33yvt4zkqrmp0ppugnv4q80u7tl6qau2tsc8hsnlhdu58w3qmtgrw3gs6txwmy8w6789c62w06rjw3scf43v4jayafl4p4jllwam4gjy8q56007k3''multi
UPDATE channels   SET  in_payments_offered = 0,  in_payments_fulfilled = 0     ,  in_msatoshi_offered = 0,  in_msatoshi_fulfilled = 0     , out_payments_offered = 0, out_payments_fulfilled = 0     , out_msatoshi_offered = 0, out_msatoshi_fulfilled = 0     ;
INSERT INTO outputs (  prev_out_tx, prev_out_index, value, type, status, keyindex, channel_id, peer_id, commitment_point, option_anchor_outputs, confirmation_height, spend_height, scriptpubkey) VALUES (, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, );
label #0''lnbc1quv494dd78yes4a74v2smz00t2tt5s3053f2c7vjsq8dj2vyg80ry3ejfncv7c99qk7mm4q2cqn7m5lgqcyy9uqlj0vquvvkjhep8gslh84zy2zj5pp5umhtuz6xezlmnd64lyj36mmg5ts7zqs4hw7c68gdwa9np7y36ra6uvhc0e6su7za5ax37rnygwj9jqaknwj7kdc8gqkh9f47r3as5pf4mtkayz6uk58464r69u7ul8rfc''multi
label #0''lnbc1qahc4garhdjtwd8a3tew2wzr683eupv3ywa726hqh6p9c7gm5842f6mh5hurg2z99ts0ke46z3c80gfwgtn90gqrtxcgfja744s77s7v5k4ygwr22ktak3hlgkrgxzgjytfuvz3c3dqcdetfad7ps0r9rx9mhm07geegfww4d4humnthu3ae79xn3pwvz0fw889h230szt465dppevhalnzj5e3nq6gxku2gpmtvrw888k9hw05vx4r''multi
label #0''lnbc1yph63p6fceeudp4ffx750f9pu8hwgpcd5js58ft9k7a24a4pxp0a2nrjshwn5eaks7jmgtdf7e54my4epv0erl2rt9d7nltwwrg72z7mcrrpajm3yuuafw72th385nmnq55rmz497rupmhh302ygnkjvuc2y5rwx0qp8d54usme5xf4ehz6mn3s3d7q72lzezgw2jcrr723hdddf6ces4nu6msmgj6mde4ztvg06n06htej9mtgefh5xvpj35e3f64a''multi
label #0''lnbc1m00r4uwvvnr6xfhmzs0c7yp72tuzpf8apj3c2f6290quwu366a0384j3g7jrl62evmrjlu0jeuvtfpgufzss2jqs8srcva5mrjjhncwdket5rhufrdm6ytf7pc5mhuf46nan6dr6vmrchdf85kd67s4njv42xkdlryrpj6sl2chmuxj2eqmaxndmj5fvxrfwgq9qk9r78v96s07dpdvnf63dk96cq9mq9f9vfnves03xn2kd0phhzkh9fv0r5hut0nfkex65jav8''multi
label #0''lnbc1g5lmfq2t96www0e37t7s0tyhcth7rvjatrrp09tdq0gyk57q6eaj89600mvskejep327v8umu4cqtqpmme8vpq66lm8la94uwz03u9dxhee78qn2sv9f5w8zhm8mcmugvjjz6d3pmy85cg8fwwdf6gejah3m866ywz2n6lxu2us795fffv8m3tmdc75yx2mx23elclltq5xdt3akjsjhzdw9l3t09uld02w4h3rpfpv48fwqxnte6pzycjsynkj8guefely2x2pprh''multi
label #0''lnbc1gkjk5qxs9z592avj2v7p99h66xahm2juwvqa097j6mllmptr29kr0e87a98pv7xyff0sd2ce8vnv23f35yz2tjg5zu2kkdv20ljz9m643x4khe7zqcss5ntszrzceejnxrya7se3g53fp9v78dm2hpne775xa7udcyttvxkhcgan2u4fcwceqpnzkj7yj44zr33mj2v9z907ma2rrhqvree2anvt47uvveqrxh80p5jka709x4p8dm0pasqcdyd0utn2lwv3vezanwt''multi
label #0''lnbc1x8s72kwas97hvmfzcphcx7v3hrqmrka07rgvcwnacqh3uhtze79m60eccq4w90ac3532nh2j7jv69vm46er9vvkjcqcs90aamzezhgqvf8llq2gjh40g5s5q6rsujvyxf0t97ahqdns48mff6apkux40ygczjall3vc88m5g0fxw26vzhf02jdhq9h3gkjxehgrm9a8q4whx29ahrrhgesxjzy5v9eg6adskqwvf7ydhx46pd38nr84dxn5qxgujpjjxq70g62zhxx65af''multi
label #0''lnbc1x4jvefa5h4h8ruzqtm282jsg6n94cwka4km5cn0h0castxyhm4xnh0dneh545xlax5zrjctx2qg07ql5ec5ul5n8qyzgg6xy0fravlwyxtdu5w9wn5nvtvx3n6vxpw5mnglewr944q76zavmp9x8evu7hw2n0wpl20vslzxq54u0pcmr2xp0ndxraqyf7asl8xgp3jk8cl55mh9qxe36ldajnvleh0wc6el45xsrf88u86ury0mp3dqwrqargpnd60r5cnzfwatdtjfyj93cj''multi
label #0''lnbc1qrflk8jgzjuuk5ccnvn6h2sdepq7qnmslgfe99ktnufad6qwlfutfvq4vqap39pcjreh3fu8y98xxperafxjacr4r72z9gv0ngj7r7wjh3gq9vkdllhupytgkaq7ny6dlz68yqzc0g8ccs5h0ah7h88myvw6m90xzat2ktqvnkndl8flvez5za3p3ygu4alrsr3kv5kgvwaff9j2wcervdjcjxlepmjnkgru33vzazn202cm86y95xmaqgq5lphjhpq5dwnqyyzc3uue96gssc''multi
label #0''lnbc1s45d4aj6a78yevurx9xf6xyzclzj6ahkgfzy0snvlx6zhvn9kwk2tsytzv4wc634rqqdk57557mye7yyhxq4p560zcsd60jrjnw55ylz9yfd6qx2wdk06uz08h76e7f7q6jr7xa6glrtc7syen09vs5g6slnhda9q2ek3knzrrn5wmhvzacvgmfgqtzhg0sxs3eg0rge5u37mfgkxarz40zqhft4aw5qnt2ttcds0fx75kh6s7qmwngx67aea02ukadyvlag4cqch5xx0khw27''multi
label #0''lnbc1qpa96r36899nj75wnkpaxv3khf0hluk9r2frayw9gk592zxpk7gs4ekmmtrhm6feteth8ph60n89a090556rj6fpr4p3py50gcflyfjqqjr90l3m8x9473ca2xr2yw98dzjm2a7xaghfykdr9rcsar4kqyxhepzp93wgc2q5scvd3gppzckr4h7fk8sv9pyew56p3gv2ectjzv6rnymamw4ztepe62ruwek7de3m7mpsx0nprx29mwtexkkl77u3xg45a3ddxug2gms94vtcvp66au66''multi
label #0''lnbc1kfhskl3f4759u0arpjc5zpkpqsh2gzt6wezzh03pg9xxa7a6rq9uwyazneq3g0hps9vn57lf280qnruvm9ql9aefu60p9kqkkygmcx3cr95wyq3vl88f8c0nt6n02reujpagkq39gnl6cr93apfdr872wl25jc8sjxkjt694vcde203mmsk5x88qh5vccdaz2rjpy7mpmgz9cue5jl80e247vr2fu4t59y6nmm854g9x9j2u7u74msvy5zxkvm8x6vepuhnnd4yq74dqtxela4xxx5tv25kxtc''multi
CREATE TABLE forwarded_payments (  in_htlc_id INTEGER REFERENCES channel_htlcs(id) ON DELETE SET NULL, out_htlc_id INTEGER REFERENCES channel_htlcs(id) ON DELETE SET NULL, in_channel_scid INTEGER, out_channel_scid INTEGER, in_msatoshi INTEGER, out_msatoshi INTEGER, state INTEGER, UNIQUE(in_htlc_id, out_htlc_id));
label #0''lnbc137xr6mv7xt0xpegqkr6qfet9p329axqh2le7s2ypz3pm2n9f960ec7uarxldrw7yy0gadmetfx356pqzvx9frypfkgeuxl7z6vkp6lntv3hfpk30yd5ees3f0djs8lf9gyprks7ll2he5z5n3wy2wat75s9ekh5lnfvvgqvsx5xlptwg3septlw2yr3e6tzdwvdetkttk0pxgtdx2720qz9guqqw6n98e488vlhwlgv7cgn4a7fpelnelxqkvcv7l0lkgr8e5veajfe0kkjg5rg939mkwfy7su3740''multi
label #0''lnbc10vrgf5cq9hlwkwupk0s7w6zpfeqtx6q9r779luqn0gd8xa0xyhawxdy4wmpv59rkeq7efptau8xyng4ydqeh4gll9lfuejc2f4a4vzv03xtc6j33tqxzyswpsjqjjahmjur89w95kehjtrk0dwxgpangzx7apt55aykjz7al035tdjgvleaycrazpa2nyhj6jsxmw8ms2atsk7wu2x3mf8vlvhwysa6f9ppkrzkgrgwuysg8rvv7vut3lu5khw6zjgetx8ylt8l0m28mt2hr6sgucwzwvug7qmykey8c''multi
label #0''lnbc12yy2enwpx7p2wnzp760sx286cvvt466zvh2a4h5z3wynv5eakns98jyggkpag97nggrc2qexuwz2tsfyanjeer7j7krdvzguvxgldlwc4ryfjdmafe02dtz8kr00r5cc9ttw3fmkv5alyu46j4k6ksvzzf957v446tp3j2ae8g89d3xnspd5w7c36f6u84g44rsd7c43elxq0x56etl4zxkuj02ygdu23823yujq05pcau9sz835q5vnjfapy0vw3cud396ptxqp9ejmaty6n8y4wd6taku38kc9f64hn3yk''multi
label #0''lnbc1q0yw0sk9xyeszcwmtcyefc20nndw7698l3clhd27wqlddla8vfy54sn2uwpklguw7axv2d0txsm04mfft7n4n07qr7sgzag2qly42ugf0u0xhqpuygprf5gngpa4njtdf4td09sadqt5h5npr6hnhw9pmj3v4gjnhs0fc5kw7d9c2qlx7sdm7ycypf52rdufu6uqqrpzrp4u9pps7ukc30pl4zgqv22w44zjwaa6kss96hw7x8ckjsqa7djya2h9ysj3fv2qan58cz0rvpry67xda24ychy6hcerllvxandj0''multi
label #0''lnbc1h5526suxynk7txkjj93phe2829dvcp0qwfgsgeklhghfuuz9cuqgrfwakzz8rea8xj95zmfhrkdtpazgfvh5jl6qtdtf0nl300ymtstgqsmuyrqma43m86raa5e5dp840wnavggkz4f7yfxyc8jddfgdakua4xxr5kgxls8k3csfprr89gs42r55g7zjty75gfmpk6rp2j7p7qesae2meqdz26dqywcyczzwwx4gkt7r865tchquramrcewgzzkkgudlaf2l65fagpzjfwzlg2cxwlf5erqrf2pmc0x8hu7uvzm0dzj5es''multi
label #0''lnbc19qa5x24axzvvakgflxkvv7twndzpvtyg8un3rawfgcqth2jhthzu6c23t6draevxgq6a2xgaedsdphpm9ekjtdhaut77scuh5f249zqmy4x4l8r88nnsr7krtg7rtdzdx32pgedyf386wv8rmpn88adw3p8lr9uw67t323ktgfkg27fgslvr80zawkesjz6g0x6464hvtfctsp8tf2ymjvq50kex969s3ytjm85ukjfdkls38kt56p2plxj7lx50a9e360a25dtfxkxxhhfpadw3gv3m95vqwevuxjm35dxatet59wn57gpr3gkpud9p''multi
label #0''lnbc1qa0yhgd6kghgm6vzwdnuue2cz9x55ucpncfhr5w79r950vltyynwmakj9nss6m2ylaxkpda8zacp366pukr9dl6ww5syrq5q8xhfwu3x48gph0yeuw4wwkvaywnhm8wvqu4tc9y9pc9k4yxlydh05ph809suaphp72a4lnw4wqtvpm3rgxwl3a5x4ccgkxqxkn68rgnugqr0jrnw36jx2aqzxuzuvcdlndrh6nyudrulr44e9nwh9l8zmxz7d55h4gh58vpdtjem66aq6d4ed9pupvt2etq86euan58yqlh2a3fy0z6s4x0rsu3h8f99kxnrewep''multi
label #0''lnbc1c87kzpkgqqjqz6nzcvygf6a9nppj5hc8855ll64wlkdk6put8funze5yv2y4xvqkm8yukwzm87mtny59akavkh8f77vxck8akluecgx8kk7naec2szyuckxnh2drafeqzenklkff8u5cn9ug0yqvktzshcxvnypcjvx82yhjgsj0sswwrurue3096fq55c6mj06j68xfx4uu2gs3z5f46wh2k9x2xwxeyvhdpjq7pjgl6j5q4u3f6m3a0w83c3m7g067fhjvcadjm265yzkqucf30mm7jv6rzksdkfax4npn322azpg0rjwmkd5g5umwvatlly83ksw''multi
label #0''lnbc17t3r7qn5hd700tmfaa2hd3az34n395gv7pukx25pdu5jcelx6ap05n6wsqphlx254gh5vgy7wnhu6vpqhmtxkerfxxa2wu92ajtm5mpfaguuytknktgm4xtecmrvv0zu4g3f4vu3rg5f424ykf6n6vcarlf6kejzh9tjvtku7tc3k8hrr4dm82qaxa4rszhjf7jdlf06am5de7ljudu5gvcles2p3h9sy5nufq6ut057p2xvf9hruufl4uad98pqzccac03q5vqfq687cexd08mnc45vn0myansnm8d5ytfe0456j5k9x80a8w0u6txyt4kx0uec0n3pv573se''multi
label #0''lnbc1h2287c4cpa8lmayzrkq7exxw6n0r44dqvk22z8vgjxahzlye086cj3hx0nh0gpyn3dh9s80zy6dc8cmah7ztfw2hzkdw68035l0aa72c5jxgce9mdsvlpt4yt4lextmfhd0myenlvhj0ldsdn53hl04h5er0r5r5dwv7ztqf3j327kxw0snglmk9pqvuz4pf5cl6fyk2dsf9alt6h90lat236ahcvdu0f5tquv9qecf95p49pzkphup5wqpmnn4m407ry72sjm4ak2d9rqfhgrtvgnv3y824398zdgzhd89622nznxsuyq833ehprppk8rm42xkfxrzfv3rlwmgszrg3qnxphtv''multi
label #0''lnbc1n25u9lpyghj2z0mrwep4w5ddz9xgpdq5guwpsyre3rcsxgqw48tqgz72xs5xuxmz3yguu0h334t26qmmy5dfe6utqx2jw63lqk50gaqtrs7cu6r4hnyssw28g46leg6u2cga8xjzmecq4seufv4x6j2aypwmxhpuzrc9xkpz6t9r0wtyqdlny0wmfsk8ll4vl8d0pazvssz3jkpnnfqa6m8lxq36ku3anrmaawge9sej2wty3q2569ka490nsm53vclxpf7e4xhc20s7wsf48a6whgz9r5a0uc7j070ngan4nvpyx2wm2x8g86xkpf0rhs5g2awup4xjte8z86ww8frwp39h32js3rnsvcqa5q20''multi
label #0''lnbc1fwslsee3c2h7hxxvvlnzgs8l45n9yurxk7q3lj5etzmfe6dn7zkpap2xefnakls9ct0hwzf7eyfrqkw6jejhdm2m3zxl7vh98afmsmzna74t92n50qqcq4vpgukrwj554qpssvdj7g3cml9g05u9hwnercphwx0r7glpdhp3yc6ladxnu4924ej2cmqulf0luadasjm6yzklt5lxadgdh8tdm5vwvxcawyx5q3pkadpzewyt0gtawfghjgkqujwu8jcds9f9yys5zd95hcd7l7j43agnl6hn38wyeqmrkjhh7n329ny06f2mc89yshv9q6xch9gnm2ddkneplkj6w7skfd3436u88rnftc90u5amvzp3c98y''multi
label #0''lnbc1yk2nw8pzyt7ymj7enckqnq6qh33vz3gahg79jvklk24e4fr8wt8qtqqe9gc7x6uyrsgwf52zg7rrc8adffrzv2vlgdg8xea5e763erverp54sxklpgr84xcql9uvulhzlxmmtrgegp8zxvp3lakjy7xztgrux73x5624duztl6pez3j9rp35vj4dyphw3qnurk3nzzhgadxuwnhkc49wwsmscpc8vpqu230fsxdggex4xa6v93kssuqkw9kyuh0d2phtrljljz42dq4gev379788v245yl3l0nmjyzrmutlmgdc3jtuvk0hghx2uysh3998vp2rkrkr86zl8zwdz4wsmcf2ajn68chsxkrguzvw2wygkvmaygrmcf7r928''multi
label #0''lnbc1n9pnjnfpjfz2s5wjrxf6hh65ttxry5prddv60l9lj925cpxqcn6wtmd55pjmkccfyvyzm7qverq6t6sn9h04a4pjk7tqakfch3mpq4qhnq2jsygjlcf88hgw3g9qgru65jm624d4tdfj94y9dt4qt0c29dfueeznhmnumlmne755zae6avkm54772zn2nfmqq0e6rqa2szgs7v2ja5dpw9ac6tldyy64tr5jj4mrrfpk9sp7cp74zwan7ag2wvkhvtkza96zg8sxl94lqtzawfpfckm72re2wpdrsa9qwak326s3nqtf2m7y39nz9jpz42ma2ezav54u64u20h649ulc0k9wdkvessyaplqzcsvptv67td02t8fg959xydk9z8lg6jl''multi
label #0''lnbc18ck597skh52l80jqsppdsasl4vw6hguyefvc58qnswzagqjaaqrkzarz8vgtwj8lyx9hjlnl2m9z5q0h63vkumj9zcymke8p606q4s9fmxzj27rgem42wm2pcpg4w7cvmuz2jrvkvrhhu8elq47n9cr0qvmf654dnh7sqj7tnkrvmevmv4s5nqlfwqxg7jecrwhkyhrg8tzjy5qm9z6g8fee5pz0zjvy8yk8d5wp29ks4plrh8twgre8e8s0cff6fgn9w8cqhx45jegh2v2q7c34358yy03pcu449wntv5tyzcy3rq095fa67wnr07d8ycyrm4fetwjga39luxvazuq3kr3nflkee03htq5axdayk7xq26qupre0zgcnl279zn7ulnd''multi
label #0''lnbc1ca24adcsxtdcwm5j0kk8dt0f3f00gmm2ksutxxkrecmaqks3u39dxf495zmzdszfev2spd785m02h3hwvgy226mlcaerhymfjalsvs3deurjg05plqj0g9eggas4uyvqpumvegraakz52l5llekkv05wt07c260waq5aasxgghpu89a5meevlx98wxlt56mmz5x9cwzelspzp5mexky79l0gxlpx0q38efv5783uszlsgpz9sx5htghp0n48a3lz8y26nunhu8eegaz4cvxz77gkkuqn3wvdzeeutf5tazcwllgkus2wqnvfcr92l24wya40qnk57yrgqt0zn6lrjxwj3gwqnjmjuc04w8fuq90ylclzhujxmxmxahp543lle96h5k360''multi
label #0''lnbc10mdd3z06hzyh7c9jjvs2qwqx5qxgakyuuvkfnp5dgqpxke9cm9p2ud6ax3t76028phw4p9vwlkf4zwhzkqg9u4d7469u0dfkwukfqxz8f5alcsnkxtwgja6q56arllenk4jr34r6q6glc9aane7gx25gvs4nmdt7sqfgmhzcsdt5mc25uuhhtcltsh8ny8kwpe0r8u8sm8tgpxfnsvspwgyqwydky8k4dqxth70nfsjzf5rs9g9qw4y6vh2lnj08ldq7crptz2te5wrjfqgedf3k3ap68h7rehy67rnd9d4hdekxflk9n2k43zwg4fs053msvjdqdcnuvxave49vpx9euaspcln8f3v5pxpe2z9lsqtqk5qaeczxucpqelmexd99qywmpnu''multi
CREATE TABLE forwarded_payments_new (  in_htlc_id INTEGER REFERENCES channel_htlcs(id) ON DELETE SET NULL, out_htlc_id INTEGER REFERENCES channel_htlcs(id) ON DELETE SET NULL, in_channel_scid INTEGER, out_channel_scid INTEGER, in_msatoshi INTEGER, out_msatoshi INTEGER, state INTEGER, received_time INTEGER, resolved_time INTEGER, failcode INTEGER, forward_style INTEGER DEFAULT NULL, UNIQUE(in_htlc_id, out_htlc_id));
CREATE TABLE channel_htlcs (  id INTEGER,  channel_id INTEGER REFERENCES channels(id) ON DELETE CASCADE,  channel_htlc_id INTEGER,  direction INTEGER,  origin_htlc INTEGER,  msatoshi INTEGER,  cltv_expiry INTEGER,  payment_hash BLOB,  payment_key BLOB,  routing_onion BLOB,  failuremsg BLOB,  malformed_onion INTEGER,  hstate INTEGER,  shared_secret BLOB,  PRIMARY KEY (id),  UNIQUE (channel_id, channel_htlc_id, direction));
CREATE TABLE payments ( id INTEGER, timestamp INTEGER, status INTEGER, payment_hash BLOB, destination BLOB, msatoshi INTEGER, payment_preimage BLOB, path_secrets BLOB, route_nodes BLOB, route_channels BLOB, failonionreply BLOB, faildestperm INTEGER, failindex INTEGER, failcode INTEGER, msatoshi_sent INTEGER, description TEXT, bolt11 TEXT, total_msat INTEGER, partid INTEGER, PRIMARY KEY (id), UNIQUE (payment_hash, partid));
CREATE TABLE payments ( id INTEGER, timestamp INTEGER, status INTEGER, payment_hash BLOB, destination BLOB, msatoshi INTEGER, payment_preimage BLOB, path_secrets BLOB, route_nodes BLOB, route_channels BLOB, failonionreply BLOB, faildestperm INTEGER, failindex INTEGER, failcode INTEGER, failnode BLOB, failchannel TEXT, failupdate BLOB, msatoshi_sent INTEGER, faildetail TEXT, description TEXT, faildirection INTEGER, bolt11 TEXT, total_msat INTEGER, partid INTEGER, PRIMARY KEY (id), UNIQUE (payment_hash, partid))
CREATE TABLE payments ( id INTEGER, timestamp INTEGER, status INTEGER, payment_hash BLOB, destination BLOB, msatoshi INTEGER, payment_preimage BLOB, path_secrets BLOB, route_nodes BLOB, route_channels BLOB, failonionreply BLOB, faildestperm INTEGER, failindex INTEGER, failcode INTEGER, failnode BLOB, failchannel TEXT, failupdate BLOB, msatoshi_sent INTEGER, faildetail TEXT, description TEXT, faildirection INTEGER, bolt11 TEXT, total_msat INTEGER, partid INTEGER, PRIMARY KEY (id), UNIQUE (payment_hash, partid));
INSERT INTO payments (id, timestamp, status, payment_hash, destination, msatoshi, payment_preimage, path_secrets, route_nodes, route_channels, failonionreply, faildestperm, failindex, failcode, failnode, failchannel, failupdate, msatoshi_sent, faildetail, description, faildirection, bolt11)SELECT id, timestamp, status, payment_hash, destination, msatoshi, payment_preimage, path_secrets, route_nodes, route_channels, failonionreply, faildestperm, failindex, failcode, failnode, failchannel, failupdate, msatoshi_sent, faildetail, description, faildirection, bolt11 FROM temp_payments;
CREATE TABLE channels (id INTEGER, peer_id INTEGER REFERENCES peers(id) ON DELETE CASCADE, short_channel_id TEXT, state INTEGER, funder INTEGER, channel_flags INTEGER, next_index_local INTEGER, next_index_remote INTEGER, next_htlc_id INTEGER, funding_tx_id BLOB, funding_tx_outnum INTEGER, funding_satoshi INTEGER, msatoshi_local INTEGER, fundingkey_remote BLOB, per_commit_remote BLOB, local_feerate_per_kw INTEGER, remote_feerate_per_kw INTEGER, shutdown_keyidx_local INTEGER, last_tx BLOB, last_sig BLOB, feerate_base INTEGER, feerate_ppm INTEGER, full_channel_id BLOB DEFAULT NULL, PRIMARY KEY (id));
UPDATE channels SET  shachain_remote_id=0,  short_channel_id=NULL,  full_channel_id=,  state=0,  funder=0,  channel_flags=0,  minimum_depth=0,  next_index_local=0,  next_index_remote=0,  next_htlc_id=0,  funding_tx_id=,  funding_tx_outnum=0,  funding_satoshi=0,  our_funding_satoshi=0,  funding_locked_remote=0,  push_msatoshi=0,  msatoshi_local=0,  shutdown_scriptpubkey_remote=NULL,  shutdown_keyidx_local=0,  channel_config_local=0,  last_tx=, last_sig=,  last_was_revoke=0,  min_possible_feerate=0,  max_possible_feerate=0,  msatoshi_to_us_min=0,  msatoshi_to_us_max=0,  feerate_base=0,  feerate_ppm=0,  remote_upfront_shutdown_script=NULL,  option_static_remotekey=0,  option_anchor_outputs=0,  shutdown_scriptpubkey_local= WHERE id=0
CREATE TABLE channels (  id INTEGER,  peer_id INTEGER REFERENCES peers(id) ON DELETE CASCADE,  short_channel_id TEXT,  channel_config_local INTEGER,  channel_config_remote INTEGER,  state INTEGER,  funder INTEGER,  channel_flags INTEGER,  minimum_depth INTEGER,  next_index_local INTEGER,  next_index_remote INTEGER,  next_htlc_id INTEGER,  funding_tx_id BLOB,  funding_tx_outnum INTEGER,  funding_satoshi INTEGER,  funding_locked_remote INTEGER,  push_msatoshi INTEGER,  msatoshi_local INTEGER,  fundingkey_remote BLOB,  revocation_basepoint_remote BLOB,  payment_basepoint_remote BLOB,  htlc_basepoint_remote BLOB,  delayed_payment_basepoint_remote BLOB,  per_commit_remote BLOB,  old_per_commit_remote BLOB,  local_feerate_per_kw INTEGER,  remote_feerate_per_kw INTEGER,  shachain_remote_id INTEGER,  shutdown_scriptpubkey_remote BLOB,  shutdown_keyidx_local INTEGER,  last_sent_commit_state INTEGER,  last_sent_commit_id INTEGER,  last_tx BLOB,  last_sig BLOB,  closing_fee_received INTEGER,  closing_sig_received BLOB,  PRIMARY KEY (id));
CREATE TABLE channels (  id INTEGER,  peer_id INTEGER REFERENCES peers(id) ON DELETE CASCADE,  short_channel_id TEXT,  channel_config_local INTEGER,  channel_config_remote INTEGER,  state INTEGER,  funder INTEGER,  channel_flags INTEGER,  minimum_depth INTEGER,  next_index_local INTEGER,  next_index_remote INTEGER,  next_htlc_id INTEGER,  funding_tx_id BLOB,  funding_tx_outnum INTEGER,  funding_satoshi INTEGER,  funding_locked_remote INTEGER,  push_msatoshi INTEGER,  msatoshi_local INTEGER,  fundingkey_remote BLOB,  revocation_basepoint_remote BLOB,  payment_basepoint_remote BLOB,  htlc_basepoint_remote BLOB,  delayed_payment_basepoint_remote BLOB,  per_commit_remote BLOB,  old_per_commit_remote BLOB,  local_feerate_per_kw INTEGER,  remote_feerate_per_kw INTEGER,  shachain_remote_id INTEGER,  shutdown_scriptpubkey_remote BLOB,  shutdown_keyidx_local INTEGER,  last_sent_commit_state INTEGER,  last_sent_commit_id INTEGER,  last_tx BLOB,  last_sig BLOB,  closing_fee_received INTEGER,  closing_sig_received BLOB, first_blocknum INTEGER, last_was_revoke INTEGER, feerate_base INTEGER, feerate_ppm INTEGER, full_channel_id BLOB DEFAULT NULL,  PRIMARY KEY (id));
CREATE TABLE channels_new (  id INTEGER,  peer_id INTEGER REFERENCES peers(id) ON DELETE CASCADE,  short_channel_id TEXT,  channel_config_local INTEGER,  channel_config_remote INTEGER,  state INTEGER,  funder INTEGER,  channel_flags INTEGER,  minimum_depth INTEGER,  next_index_local INTEGER,  next_index_remote INTEGER,  next_htlc_id INTEGER,  funding_tx_id BLOB,  funding_tx_outnum INTEGER,  funding_satoshi INTEGER,  funding_locked_remote INTEGER,  push_msatoshi INTEGER,  msatoshi_local INTEGER,  fundingkey_remote BLOB,  revocation_basepoint_remote BLOB,  payment_basepoint_remote BLOB,  htlc_basepoint_remote BLOB,  delayed_payment_basepoint_remote BLOB,  per_commit_remote BLOB,  old_per_commit_remote BLOB,  local_feerate_per_kw INTEGER,  remote_feerate_per_kw INTEGER,  shachain_remote_id INTEGER,  shutdown_scriptpubkey_remote BLOB,  shutdown_keyidx_local INTEGER,  last_sent_commit_state INTEGER,  last_sent_commit_id INTEGER,  last_tx BLOB,  last_sig BLOB,  closing_fee_received INTEGER,  closing_sig_received BLOB, first_blocknum INTEGER, last_was_revoke INTEGER, feerate_base INTEGER, feerate_ppm INTEGER, full_channel_id BLOB DEFAULT NULL, alias_local INTEGER DEFAULT NULL, alias_remote INTEGER DEFAULT NULL,  PRIMARY KEY (id));
DROP TABLE temp_payments;
INSERT INTO version VALUES (0)
CREATE TABLE version (version INTEGER)
INSERT INTO channel_configs DEFAULT VALUES;
ALTER TABLE payments RENAME TO temp_payments;
CREATE INDEX channel_idx ON htlc_sigs (channelid)
CREATE UNIQUE INDEX invoices_pay_index ON invoices(pay_index);
UPDATE transactions SET type = 0, channel_id = 0 WHERE id = 
DELETE FROM peers WHERE id NOT IN (SELECT peer_id FROM channels);
CREATE TABLE db_upgrades (upgrade_from INTEGER, lightning_version TEXT);
CREATE INDEX output_height_idx ON outputs (confirmation_height, spend_height);
INSERT INTO transactions (  id, blockheight, txindex, rawtx) VALUES (, NULL, NULL, );
CREATE TABLE shachains (  id INTEGER, min_index INTEGER, num_valid INTEGER, PRIMARY KEY (id));
CREATE TABLE vars (  name VARCHAR(0), val VARCHAR(0), intval INTEGER, blobval BLOB, PRIMARY KEY (name));
INSERT OR IGNORE INTO transaction_annotations (txid, idx, location, type, channel) VALUES (, 0, 0, 0, 0);
INSERT INTO channeltxs (  channel_id, type, transaction_id, input_num, blockheight) VALUES (0, 0, , 0, 0);
CREATE TABLE shachain_known (  shachain_id INTEGER REFERENCES shachains(id) ON DELETE CASCADE, pos INTEGER, idx INTEGER, hash BLOB, PRIMARY KEY (shachain_id, pos));
CREATE TABLE penalty_bases (  channel_id INTEGER REFERENCES channels(id) ON DELETE CASCADE, commitnum INTEGER, txid BLOB, outnum INTEGER, amount INTEGER, PRIMARY KEY (channel_id, commitnum));
CREATE TABLE utxoset ( txid BLOB, outnum INT, blockheight INT REFERENCES blocks(height) ON DELETE CASCADE, spendheight INT REFERENCES blocks(height) ON DELETE SET NULL, txindex INT, scriptpubkey BLOB, satoshis INTEGER, PRIMARY KEY(txid, outnum));
CREATE TABLE channel_configs (  id INTEGER,  dust_limit_satoshis INTEGER,  max_htlc_value_in_flight_msat INTEGER,  channel_reserve_satoshis INTEGER,  htlc_minimum_msat INTEGER,  to_self_delay INTEGER,  max_accepted_htlcs INTEGER,  PRIMARY KEY (id));
INSERT INTO outputs (  prev_out_tx, prev_out_index, value, type, status, keyindex, channel_id, peer_id, commitment_point, option_anchor_outputs, confirmation_height, spend_height, scriptpubkey) VALUES (, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0, NULL, );
CREATE TABLE channeltxs (  id INTEGER, channel_id INTEGER REFERENCES channels(id) ON DELETE CASCADE, type INTEGER, transaction_id BLOB REFERENCES transactions(id) ON DELETE CASCADE, input_num INTEGER, blockheight INTEGER REFERENCES blocks(height) ON DELETE CASCADE, PRIMARY KEY(id));
CREATE TABLE invoices (  id INTEGER,  state INTEGER,  msatoshi INTEGER,  payment_hash BLOB,  payment_key BLOB,  label TEXT, expiry_time INTEGER, pay_index INTEGER, msatoshi_received INTEGER, paid_timestamp INTEGER, bolt11 TEXT, description TEXT, features BLOB DEFAULT '',  PRIMARY KEY (id),  UNIQUE (label),  UNIQUE (payment_hash));
CREATE TABLE forwarded_payments (  in_htlc_id INTEGER REFERENCES channel_htlcs(id) ON DELETE SET NULL, out_htlc_id INTEGER REFERENCES channel_htlcs(id) ON DELETE SET NULL, in_channel_scid INTEGER, out_channel_scid INTEGER, in_msatoshi INTEGER, out_msatoshi INTEGER, state INTEGER, received_time INTEGER, resolved_time INTEGER, failcode INTEGER, UNIQUE(in_htlc_id, out_htlc_id));
CREATE TABLE outputs (  prev_out_tx BLOB, prev_out_index INTEGER, value INTEGER, type INTEGER, status INTEGER, keyindex INTEGER, channel_id INTEGER, peer_id BLOB, commitment_point BLOB, confirmation_height INTEGER REFERENCES blocks(height) ON DELETE SET NULL, spend_height INTEGER REFERENCES blocks(height) ON DELETE SET NULL, scriptpubkey BLOB, reserved_til INTEGER DEFAULT NULL, PRIMARY KEY (prev_out_tx, prev_out_index));
CREATE TABLE channel_htlcs (  id INTEGER,  channel_id INTEGER REFERENCES channels(id) ON DELETE CASCADE,  channel_htlc_id INTEGER,  direction INTEGER,  origin_htlc INTEGER,  msatoshi INTEGER,  cltv_expiry INTEGER,  payment_hash BLOB,  payment_key BLOB,  routing_onion BLOB,  failuremsg BLOB,  malformed_onion INTEGER,  hstate INTEGER,  shared_secret BLOB, received_time INTEGER, partid INTEGER, localfailmsg BLOB, we_filled INTEGER,  PRIMARY KEY (id),  UNIQUE (channel_id, channel_htlc_id, direction));
UPDATE utxoset SET spendheight = 0 WHERE txid =  AND outnum = 0
CREATE TABLE blocks (height INT, hash BLOB, prev_hash BLOB, UNIQUE(height));
CREATE TABLE peers (  id INTEGER, node_id BLOB UNIQUE, address TEXT, PRIMARY KEY (id));
CREATE TABLE htlc_sigs (channelid INTEGER REFERENCES channels(id) ON DELETE CASCADE, signature BLOB);
INSERT OR IGNORE INTO transaction_annotations (txid, idx, location, type, channel) VALUES (, 0, 0, 0, NULL);
CREATE TABLE channel_feerates (  channel_id INTEGER REFERENCES channels(id) ON DELETE CASCADE,  hstate INTEGER,  feerate_per_kw INTEGER,  UNIQUE (channel_id, hstate));
label', NULL, -0, 0);
UPDATE transactions SET blockheight = 0, txindex = 0 WHERE id = 
UPDATE channels SET  shachain_remote_id=0,  short_channel_id='',  full_channel_id=,  state=0,  funder=0,  channel_flags=0,  minimum_depth=0,  next_index_local=0,  next_index_remote=0,  next_htlc_id=0,  funding_tx_id=,  funding_tx_outnum=0,  funding_satoshi=0,  our_funding_satoshi=0,  funding_locked_remote=0,  push_msatoshi=0,  msatoshi_local=0,  shutdown_scriptpubkey_remote=,  shutdown_keyidx_local=0,  channel_config_local=0,  last_tx=, last_sig=,  last_was_revoke=0,  min_possible_feerate=0,  max_possible_feerate=0,  msatoshi_to_us_min=0,  msatoshi_to_us_max=0,  feerate_base=0,  feerate_ppm=0,  remote_upfront_shutdown_script=NULL,  option_static_remotekey=0,  option_anchor_outputs=0,  shutdown_scriptpubkey_local= WHERE id=0
UPDATE channels SET  shachain_remote_id=0,  short_channel_id='',  full_channel_id=,  state=0,  funder=0,  channel_flags=0,  minimum_depth=0,  next_index_local=0,  next_index_remote=0,  next_htlc_id=0,  funding_tx_id=,  funding_tx_outnum=0,  funding_satoshi=0,  our_funding_satoshi=0,  funding_locked_remote=0,  push_msatoshi=0,  msatoshi_local=0,  shutdown_scriptpubkey_remote=NULL,  shutdown_keyidx_local=0,  channel_config_local=0,  last_tx=, last_sig=,  last_was_revoke=0,  min_possible_feerate=0,  max_possible_feerate=0,  msatoshi_to_us_min=0,  msatoshi_to_us_max=0,  feerate_base=0,  feerate_ppm=0,  remote_upfront_shutdown_script=NULL,  option_static_remotekey=0,  option_anchor_outputs=0,  shutdown_scriptpubkey_local= WHERE id=0
INSERT INTO vars (name, intval) VALUES ('', 0);
DELETE FROM channel_feerates WHERE channel_id=0
UPDATE channels SET  last_sent_commit=NULL WHERE id=0
UPDATE channels SET  fundingkey_remote=,  revocation_basepoint_remote=,  payment_basepoint_remote=,  htlc_basepoint_remote=,  delayed_payment_basepoint_remote=,  per_commit_remote=,  old_per_commit_remote=,  channel_config_remote=0,  future_per_commitment_point=NULL WHERE id=0
INSERT INTO channel_feerates  VALUES(0, 0, 0)
DELETE FROM utxoset WHERE spendheight < -0
UPDATE utxoset SET spendheight = 0 WHERE txid =  AND outnum = -0
label', NULL, 0, 0);
UPDATE channel_configs SET  dust_limit_satoshis=0,  max_htlc_value_in_flight_msat=-0,  channel_reserve_satoshis=0,  htlc_minimum_msat=0,  to_self_delay=0,  max_accepted_htlcs=0 WHERE id=0;
INSERT INTO payments (  id, status,  payment_hash,  destination,  msatoshi,  timestamp,  path_secrets,  route_nodes,  route_channels,  msatoshi_sent,  description,  bolt11,  total_msat,  partid) VALUES (0, 0, , , 0, 0, , , , 0, '', NULL, -0, 0);
INSERT INTO invoices            ( id, payment_hash, payment_key, state            , msatoshi, label, expiry_time            , pay_index, msatoshi_received            , paid_timestamp, bolt11, description, features)       VALUES ( 0, , , 0            , 0, '', 0            , NULL, NULL            , NULL, '', '⚡ zap ⚡
INSERT INTO invoices            ( id, payment_hash, payment_key, state            , msatoshi, label, expiry_time            , pay_index, msatoshi_received            , paid_timestamp, bolt11, description, features)       VALUES ( 0, , , 0            , 0, '', 0            , NULL, NULL            , NULL, '', 'emoji 🥩🍺
DELETE FROM channels WHERE id=0
INSERT INTO payments (  id, status,  payment_hash,  destination,  msatoshi,  timestamp,  path_secrets,  route_nodes,  route_channels,  msatoshi_sent,  description,  bolt11,  total_msat,  partid) VALUES (0, 0, , , 0, 0, , , , 0, 'multi
INSERT INTO peers (node_id, address) VALUES (, '');
INSERT INTO invoices            ( id, payment_hash, payment_key, state            , msatoshi, label, expiry_time            , pay_index, msatoshi_received            , paid_timestamp, bolt11, description, features)       VALUES ( 0, , , 0            , 0, '', 0            , NULL, NULL            , NULL, '', '''s tab
INSERT INTO invoices            ( id, payment_hash, payment_key, state            , msatoshi, label, expiry_time            , pay_index, msatoshi_received            , paid_timestamp, bolt11, description, features)       VALUES ( 0, , , 0            , 0, '', 0            , NULL, NULL            , NULL, '', 'coffee
INSERT INTO invoices            ( id, payment_hash, payment_key, state            , msatoshi, label, expiry_time            , pay_index, msatoshi_received            , paid_timestamp, bolt11, description, features)       VALUES ( 0, , , 0            , 0, '', 0            , NULL, NULL            , NULL, '', '''s the "best" café
label
INSERT INTO invoices            ( id, payment_hash, payment_key, state            , msatoshi, label, expiry_time            , pay_index, msatoshi_received            , paid_timestamp, bolt11, description, features)       VALUES ( 0, , , 0            , 0, 'multi
INSERT INTO invoices            ( id, payment_hash, payment_key, state            , msatoshi, label, expiry_time            , pay_index, msatoshi_received            , paid_timestamp, bolt11, description, features)       VALUES ( 0, , , 0            , 0, '', 0            , NULL, NULL            , NULL, '', '日本語のラベル
INSERT INTO invoices            ( id, payment_hash, payment_key, state            , msatoshi, label, expiry_time            , pay_index, msatoshi_received            , paid_timestamp, bolt11, description, features)       VALUES ( 0, , , 0            , 0, '', 0            , NULL, NULL            , NULL, '', '''
INSERT INTO outputs (  prev_out_tx, prev_out_index, value, type, status, keyindex, channel_id, peer_id, commitment_point, confirmation_height, spend_height, scriptpubkey) VALUES (, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, );
INSERT INTO outputs (  prev_out_tx, prev_out_index, value, type, status, keyindex, channel_id, peer_id, commitment_point, confirmation_height, spend_height, scriptpubkey) VALUES (, 0, 0, 0, 0, 0, NULL, NULL, NULL, 0, NULL, );
INSERT INTO channels (id, peer_id, short_channel_id, state, funder, channel_flags, next_index_local, next_index_remote, next_htlc_id, funding_tx_id, funding_tx_outnum, funding_satoshi, msatoshi_local, fundingkey_remote, per_commit_remote, local_feerate_per_kw, remote_feerate_per_kw, shutdown_keyidx_local, last_tx, last_sig, feerate_base, feerate_ppm, full_channel_id) VALUES (0, 0, '', 0, 0, 0, 0, 0, 0, , 0, 0, 0, , , 0, 0, 0, , , 0, 0, );
line
UPDATE outputs SET confirmation_height=0 WHERE keyindex=0
INSERT OR IGNORE INTO forwarded_payments (  in_htlc_id, out_htlc_id, in_channel_scid, out_channel_scid, in_msatoshi, out_msatoshi, state, received_time, resolved_time, failcode) VALUES (0, 0, 0, 0, 0, 0, 0, 0, NULL, NULL);
INSERT INTO channel_feerates (channel_id, hstate, feerate_per_kw) VALUES (0, 0, 0);
INSERT INTO payments (  id, status,  payment_hash,  destination,  msatoshi,  timestamp,  path_secrets,  route_nodes,  route_channels,  msatoshi_sent,  description,  bolt11,  total_msat,  partid) VALUES (0, 0, , , 0, 0, , , , 0, '', NULL, 0, 0);
UPDATE invoices   SET state=0     , pay_index=0     , msatoshi_received=0     , paid_timestamp=0 WHERE id=0;
UPDATE vars SET intval=0 WHERE name='';
for order 0: ''thanks''');
UPDATE channel_htlcs SET hstate=0, payment_key=NULL, malformed_onion=0, failuremsg=, localfailmsg=NULL, we_filled=NULL WHERE id=0
INSERT INTO blocks (height, hash, prev_hash) VALUES (0, , );
UPDATE channel_htlcs SET hstate=0, payment_key=, malformed_onion=0, failuremsg=NULL, localfailmsg=NULL, we_filled=NULL WHERE id=0
INSERT OR REPLACE INTO channel_feerates (channel_id, hstate, feerate_per_kw) VALUES (0, 0, 0)
UPDATE channels SET  next_index_local=0,  next_index_remote=0,  msatoshi_local=0,  per_commit_remote=,  local_feerate_per_kw=0,  last_tx=,  last_sig= WHERE id=0
DELETE FROM htlc_sigs WHERE channelid = 0
UPDATE channels SET next_htlc_id=0 WHERE id=0;
INSERT INTO htlc_sigs (channelid, signature) VALUES (0, );
INSERT INTO channel_htlcs ( id, channel_id, channel_htlc_id, direction, msatoshi, cltv_expiry, payment_hash, hstate, shared_secret, routing_onion, received_time, partid, we_filled) VALUES (0, 0, 0, 0, 0, 0, , 0, , , 0, NULL, 0);
INSERT INTO htlc_sigs (channelid, signature) VALUES (0, )
UPDATE vars SET intval = intval + 0 WHERE name = '' AND intval = 0