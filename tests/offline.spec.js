// After one visit the page works without a network: its service worker (Workbox) stores the page,
// the wasm module, the worker and the bundled texts.
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, generate, open, test, train } from './helpers.js';

test.use({ serviceWorkers: 'allow' });

test('after one visit the page loads, trains and generates offline', async ({ page, context }) => {
  await open(page, '?backend=cpu');
  await expect(page.locator('#offline')).toContainText('Ready to work offline');
  const manifest = await page.evaluate(() => fetch('/manifest.webmanifest').then((r) => r.json()));
  expect(manifest.short_name).toBe('Kiln');
  expect(manifest.display).toBe('standalone');
  const cached = await page.evaluate(async () => {
    const urls = [];
    for (const name of await caches.keys()) {
      for (const request of await (await caches.open(name)).keys()) urls.push(new URL(request.url).pathname);
    }
    return urls;
  });
  for (const file of [/\/index\.html$/, /kiln_bg-.*\.wasm$/, /worker-.*\.js$/, /shakespeare-.*\.txt$/, /milton-.*\.txt$/]) {
    expect(cached.some((url) => file.test(url)), String(file)).toBe(true);
  }

  await context.setOffline(true);
  // The network is really gone: a file the service worker does not hold cannot be fetched.
  expect(await page.evaluate(() => fetch('/not-stored.txt').then(() => 'fetched', () => 'failed'))).toBe('failed');
  await page.reload();
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  const ms = await page.evaluate(() => window.kiln.timings.ready - window.kiln.timings.start);
  console.log(`offline reload → ready: ${(ms / 1000).toFixed(1)} s`);
  await expect(page.locator('#corpus-stats')).toContainText('shakespeare.txt');
  await train(page, 3);
  expect((await generate(page, 1, 20)).length).toBeGreaterThan(0);
  await context.setOffline(false);
});

/** Serves the folder `root` (a copy of dist/) on a free port; the folder can change under it. */
async function serve(root) {
  const types = { html: 'text/html', js: 'text/javascript', wasm: 'application/wasm', css: 'text/css', txt: 'text/plain', svg: 'image/svg+xml', webmanifest: 'application/manifest+json' };
  const server = createServer((req, res) => {
    const path = join(root, decodeURIComponent(new URL(req.url, 'http://x').pathname.replace(/\/$/, '/index.html')));
    if (!existsSync(path)) return res.writeHead(404).end();
    res.writeHead(200, { 'content-type': types[path.split('.').pop()] ?? 'application/octet-stream', 'cache-control': 'no-cache' });
    res.end(readFileSync(path));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${server.address().port}/` };
}

test('a new build waits for the user, then replaces the old one whole', async ({ browser }) => {
  const root = mkdtempSync(join(tmpdir(), 'kiln-site-'));
  cpSync('dist', root, { recursive: true });
  const { server, url } = await serve(root);
  const context = await browser.newContext({ baseURL: url, serviceWorkers: 'allow' });
  const page = await context.newPage();
  await open(page, '?backend=cpu');
  await expect(page.locator('#offline')).toContainText('Ready to work offline');

  // The next build: another index.html, so another precache list in sw.js.
  const index = join(root, 'index.html');
  writeFileSync(index, readFileSync(index, 'utf8').replace('<h1>Kiln</h1>', '<h1>Kiln (new build)</h1>'));
  const sw = join(root, 'sw.js');
  writeFileSync(sw, readFileSync(sw, 'utf8').replace(/(url:"index\.html",revision:")[0-9a-f]+/, '$1new-build'));
  await page.reload();
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  await expect(page.locator('h1')).toHaveText('Kiln'); // the old build still runs the page
  await expect(page.locator('#update')).toBeVisible();
  await page.click('#update-now');
  await expect(page.locator('h1')).toHaveText('Kiln (new build)');
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  const entries = await page.evaluate(async () => {
    const keys = [];
    for (const name of await caches.keys()) keys.push(...(await (await caches.open(name)).keys()).map((r) => r.url));
    return keys.filter((k) => k.includes('index.html'));
  });
  expect(entries).toEqual([expect.stringContaining('new-build')]);
  await context.close();
  server.close();
  rmSync(root, { recursive: true, force: true });
});
