// npm `ws` as a client of picamd's /stream and /echo: a WebSocket stack
// nobody on this project wrote, checking that both ends agree on RFC 6455.
//
// usage: NODE_PATH=target/interop/node/node_modules node ws_client.js http://127.0.0.1:PORT
//
// The server must run with `--ws-echo --ws-max-message 2MiB --ping-interval 1s`
// (`cargo xtask interop` starts it so). Prints one `PASS name: detail` or
// `FAIL name: detail` line per check and exits 1 if any failed. Every wait
// has a timeout, so a silent server fails a check instead of hanging.
'use strict';

const crypto = require('crypto');
const WebSocket = require('ws');

const base = (process.argv[2] || '').replace(/^http/, 'ws').replace(/\/$/, '');
if (!base.startsWith('ws://')) {
  console.error('usage: node ws_client.js http://127.0.0.1:PORT');
  process.exit(2);
}

const STEP_TIMEOUT_MS = 10000;
// A dead server fails every check at its own timeout; past this budget the
// remaining checks are reported as not run instead of waited for, so the
// script ends well inside xtask's limit for it.
const BUDGET_MS = 40000;
const startedAt = Date.now();
// Must agree with the --ws-max-message the server was started with.
const SERVER_MAX_MESSAGE = 2 * 1024 * 1024;
let failures = 0;

function pass(name, detail) {
  console.log(`PASS ${name}: ${detail}`);
}
function fail(name, detail) {
  failures++;
  console.log(`FAIL ${name}: ${detail}`);
}

// A whole JPEG: SOI at the start, EOI at the end (JPEG ITU T.81 B.2.1).
function isJpeg(buf) {
  return buf.length > 4 && buf[0] === 0xff && buf[1] === 0xd8 &&
    buf[buf.length - 2] === 0xff && buf[buf.length - 1] === 0xd9;
}

// Opens `path` and resolves with the socket once open; also queues every
// event so a check can await the next one of a kind with a timeout.
function open(path, options = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(base + path, { handshakeTimeout: STEP_TIMEOUT_MS, maxPayload: 64 << 20, ...options });
    ws.inbox = [];
    ws.waiters = [];
    ws.pings = 0;
    const push = (ev) => {
      const i = ws.waiters.findIndex((w) => w.kind === ev.kind);
      if (i >= 0) ws.waiters.splice(i, 1)[0].resolve(ev);
      else ws.inbox.push(ev);
    };
    ws.on('message', (data, isBinary) => push({ kind: 'message', data, isBinary }));
    ws.on('pong', (data) => push({ kind: 'pong', data }));
    ws.on('ping', () => { ws.pings++; });  // ws answers with a pong by itself
    ws.on('close', (code, reason) => {
      push({ kind: 'close', code, reason: reason.toString() });
      for (const w of ws.waiters.splice(0)) w.reject(new Error(`closed ${code} ${reason}`));
    });
    ws.on('error', (e) => { ws.lastError = e; });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (req, res) => reject(new Error(`HTTP ${res.statusCode} instead of 101`)));
    ws.once('error', reject);
  });
}

function next(ws, kind, ms = STEP_TIMEOUT_MS) {
  const i = ws.inbox.findIndex((e) => e.kind === kind);
  if (i >= 0) return Promise.resolve(ws.inbox.splice(i, 1)[0]);
  if (ws.readyState === WebSocket.CLOSED && kind !== 'close') return Promise.reject(new Error('socket closed'));
  return new Promise((resolve, reject) => {
    const w = { kind, resolve, reject };
    ws.waiters.push(w);
    setTimeout(() => {
      const j = ws.waiters.indexOf(w);
      if (j >= 0) {
        ws.waiters.splice(j, 1);
        reject(new Error(`no ${kind} within ${ms} ms`));
      }
    }, ms);
  });
}

async function check(name, f) {
  if (Date.now() - startedAt > BUDGET_MS) {
    fail(name, `not run: the script's ${BUDGET_MS / 1000} s budget is spent`);
    return;
  }
  try {
    pass(name, await f());
  } catch (e) {
    fail(name, e && e.message ? e.message : String(e));
  }
}

async function streamBinary() {
  const N = 30;
  const ws = await open('/stream');
  const hashes = new Set();
  let bytes = 0, t0 = 0;
  for (let i = 0; i < N; i++) {
    const m = await next(ws, 'message');
    if (i === 0) t0 = Date.now();  // the rate over N - 1 intervals, not the wait for the first
    if (!m.isBinary) throw new Error(`message ${i} is text, expected binary`);
    if (!isJpeg(m.data)) throw new Error(`message ${i} (${m.data.length} bytes) is not a whole JPEG`);
    hashes.add(crypto.createHash('sha1').update(m.data).digest('hex'));
    bytes += m.data.length;
  }
  const secs = (Date.now() - t0) / 1000;
  ws.close(1000);
  await next(ws, 'close');
  if (hashes.size < N / 2) throw new Error(`only ${hashes.size} distinct frames of ${N}: the pattern is not moving`);
  return `${N} binary JPEGs (avg ${Math.round(bytes / N)} B, ${hashes.size} distinct), ${((N - 1) / secs).toFixed(1)} fps`;
}

async function streamBase64() {
  const N = 10;
  const ws = await open('/stream?encoding=base64');
  for (let i = 0; i < N; i++) {
    const m = await next(ws, 'message');
    if (m.isBinary) throw new Error(`message ${i} is binary, expected base64 text`);
    const text = m.data.toString('utf8');
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) throw new Error(`message ${i} is not base64: ${JSON.stringify(text.slice(0, 40))}`);
    const jpeg = Buffer.from(text, 'base64');
    if (!isJpeg(jpeg)) throw new Error(`message ${i} decodes to ${jpeg.length} bytes that are not a whole JPEG`);
  }
  ws.close(1000);
  await next(ws, 'close');
  return `${N} text messages, each base64 of a whole JPEG`;
}

async function echoText() {
  const ws = await open('/echo');
  const text = 'héllo, wörld ✓ 📷';  // multi-byte UTF-8, a 4-byte sequence included
  ws.send(text);
  const m = await next(ws, 'message');
  ws.close(1000);
  if (m.isBinary) throw new Error('echo came back binary');
  if (m.data.toString('utf8') !== text) throw new Error(`echo differs: ${JSON.stringify(m.data.toString('utf8'))}`);
  return `${Buffer.byteLength(text)} bytes of UTF-8 text echoed as text`;
}

async function echoBinary() {
  const ws = await open('/echo');
  const payload = crypto.randomBytes(70000);  // the 16-bit length form is < 65536: this needs the 64-bit one
  ws.send(payload);
  const m = await next(ws, 'message');
  ws.close(1000);
  if (!m.isBinary) throw new Error('echo came back as text');
  if (!payload.equals(m.data)) throw new Error(`echo differs (${m.data.length} bytes back)`);
  return `${payload.length} random bytes echoed as binary`;
}

async function echoFragmented() {
  const ws = await open('/echo');
  const parts = ['frag', 'mented ', 'tëxt'];
  // ws sends a message in fragments when fin is false on all but the last.
  parts.forEach((p, i) => ws.send(p, { fin: i === parts.length - 1 }));
  const m = await next(ws, 'message');
  ws.close(1000);
  if (m.data.toString('utf8') !== parts.join('')) throw new Error(`got ${JSON.stringify(m.data.toString('utf8'))}`);
  return `${parts.length} fragments came back as one text message`;
}

async function echoLarge() {
  const ws = await open('/echo');
  const payload = crypto.randomBytes(1000 * 1000);
  const t0 = Date.now();
  ws.send(payload);
  const m = await next(ws, 'message');
  const ms = Date.now() - t0;
  ws.close(1000);
  if (!payload.equals(m.data)) throw new Error(`echo differs (${m.data.length} bytes back)`);
  return `1 MB binary message echoed intact in ${ms} ms`;
}

async function pingPong() {
  const ws = await open('/echo');
  const payload = Buffer.from('are you there?');
  ws.ping(payload);
  const p = await next(ws, 'pong');
  ws.close(1000);
  if (!payload.equals(p.data)) throw new Error(`pong payload ${JSON.stringify(p.data.toString())}`);
  return 'pong carried the ping payload (RFC 6455 §5.5.3)';
}

async function serverPings() {
  const ws = await open('/echo');
  await new Promise((r) => setTimeout(r, 2500));
  const pings = ws.pings;
  // The connection must have survived on our automatic pongs.
  ws.send('still here');
  const m = await next(ws, 'message');
  ws.close(1000);
  if (pings < 1) throw new Error('no ping from the server in 2.5 s with --ping-interval 1s');
  if (m.data.toString() !== 'still here') throw new Error('echo after pings differs');
  return `${pings} server pings in 2.5 s, answered by ws; connection still echoes`;
}

async function closeHandshake() {
  const ws = await open('/echo');
  const t0 = Date.now();
  ws.close(1000, 'done');
  const c = await next(ws, 'close');
  // ws emits 'close' only after the TCP connection is gone as well.
  if (c.code !== 1000) throw new Error(`server answered close code ${c.code}`);
  return `server echoed close 1000, TCP closed after ${Date.now() - t0} ms`;
}

async function tooBig() {
  const ws = await open('/echo');
  ws.send(crypto.randomBytes(SERVER_MAX_MESSAGE + 1));
  const c = await next(ws, 'close');
  if (c.code !== 1009) throw new Error(`close code ${c.code}, expected 1009 (message too big)`);
  return `a ${SERVER_MAX_MESSAGE + 1}-byte message got close 1009`;
}

(async () => {
  console.log(`ws ${require('ws/package.json').version} on node ${process.version} against ${base}`);
  await check('ws /stream binary', streamBinary);
  await check('ws /stream?encoding=base64', streamBase64);
  await check('ws /echo text', echoText);
  await check('ws /echo binary', echoBinary);
  await check('ws /echo fragmented', echoFragmented);
  await check('ws /echo 1 MB', echoLarge);
  await check('ws /echo ping->pong', pingPong);
  await check('ws server pings', serverPings);
  await check('ws /echo close 1000', closeHandshake);
  await check('ws /echo too big -> 1009', tooBig);
  process.exit(failures ? 1 : 0);
})();
