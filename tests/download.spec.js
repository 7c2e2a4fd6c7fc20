// The download: `vite preview` (what `cargo xtask serve` runs) sends dist/'s files precompressed,
// Brotli where the browser accepts it, else gzip, else as they are; each decodes to the file.
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import zlib from 'node:zlib';
import { expect, test } from './helpers.js';

/** GETs `url` asking for `encoding`; the body as sent (not decoded). */
const get = (url, encoding) => new Promise((resolve, reject) => {
  http.get(url, { headers: { 'accept-encoding': encoding } }, (res) => {
    const chunks = [];
    res.on('data', (c) => chunks.push(c));
    res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
  }).on('error', reject);
});

test('the wasm module and the page come as Brotli or gzip, and decode to the files', async ({ baseURL }) => {
  const assets = readdirSync('dist/assets');
  const wasm = assets.find((f) => f.endsWith('.wasm'));
  const script = assets.find((f) => /^index-.*\.js$/.test(f));
  const sizes = {};
  for (const file of [wasm, script]) {
    const raw = readFileSync(`dist/assets/${file}`);
    const url = `${baseURL}assets/${file}`;
    const br = await get(url, 'gzip, deflate, br');
    expect(br.headers['content-encoding']).toBe('br');
    expect(br.headers.vary).toMatch(/accept-encoding/i);
    expect(zlib.brotliDecompressSync(br.body).equals(raw)).toBe(true);
    const gz = await get(url, 'gzip, deflate');
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(zlib.gunzipSync(gz.body).equals(raw)).toBe(true);
    const plain = await get(url, 'identity');
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.body.equals(raw)).toBe(true);
    for (const r of [br, gz, plain]) {
      expect(r.headers['content-type']).toMatch(file === wasm ? /^application\/wasm/ : /javascript/);
      expect(r.headers['content-security-policy']).toContain("default-src 'self'");
    }
    sizes[file] = `${raw.length} raw, ${gz.body.length} gzip, ${br.body.length} Brotli`;
  }
  console.log(JSON.stringify(sizes));
});
