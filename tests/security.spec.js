// What the page lets in and sends out: a Content-Security-Policy, no request outside its origin
// unless the user asks for a URL, and URLs and files checked before they are read.
import { CSP } from '../vite.config.js';
import { expect, generate, open, test, train } from './helpers.js';

test('a full session requests nothing outside the page\'s origin and breaks no CSP rule', async ({ page, baseURL }) => {
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('worker', (w) => requests.push(w.url()));
  await page.addInitScript(() => {
    window.violations = [];
    document.addEventListener('securitypolicyviolation', (e) => window.violations.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  const response = await page.goto('/?backend=wgpu');
  expect(response.headers()['content-security-policy']).toBe(CSP);
  await expect(page.locator('meta[http-equiv="Content-Security-Policy"]')).toHaveAttribute('content', CSP);
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  await train(page, 3);
  await generate(page, 1, 10);
  await page.fill('#ckpt-name', 'csp');
  await page.click('#save-browser');
  await expect(page.locator('#ckpt-status')).toHaveText('Saved "csp" in this browser at step 3.');
  // No inline script runs (and the policy allows no eval: neither keyword is in it).
  await expect(page.addScriptTag({ content: 'window.inlineRan = true;' })).rejects.toThrow();
  expect(await page.evaluate(() => window.inlineRan)).toBeUndefined();
  expect(CSP).not.toMatch(/'unsafe-eval'|'unsafe-inline'/);
  const outside = requests.filter((url) => !url.startsWith(baseURL) && !/^(data|blob):/.test(url));
  expect(outside).toEqual([]);
  expect(requests.length).toBeGreaterThan(3);
  expect(await page.evaluate(() => window.violations.filter((v) => !v.endsWith('inline')))).toEqual([]);
});

test('URLs load only as text, only over http(s), and only up to the size cap', async ({ page }) => {
  await open(page, '?backend=cpu');
  const served = { 'text/plain': 'to be or not to be\n'.repeat(200), 'text/html': '<html><body>hi</body></html>', 'image/png': 'x' };
  await page.route('https://texts.example/**', (route) => {
    const type = new URL(route.request().url()).searchParams.get('type');
    return route.fulfill({ contentType: type, body: served[type] ?? 'y'.repeat(2_500_000) });
  });
  await page.click('summary');
  const loadUrl = async (url) => {
    await page.fill('#url', url);
    await page.click('#load-url');
  };
  const error = page.locator('#data-error');
  await loadUrl('https://texts.example/page?type=text/html');
  await expect(error).toContainText('serves text/html, not a text file');
  await loadUrl('https://texts.example/p?type=image/png');
  await expect(error).toContainText('serves image/png');
  await loadUrl('file:///etc/passwd');
  await expect(error).toContainText('Only http and https URLs');
  await page.fill('#max-mb', '2');
  await loadUrl('https://texts.example/big?type=application/octet-stream');
  await expect(error).toContainText('is 2.5 MB; this page reads texts of up to 2 MB');
  await page.setInputFiles('#file', { name: 'big.txt', mimeType: 'text/plain', buffer: Buffer.alloc(2_100_000, 'a') });
  await expect(error).toContainText('big.txt is 2.1 MB');
  await expect(page.locator('#corpus-stats')).toContainText('shakespeare.txt');
  await loadUrl('https://texts.example/hamlet.txt?type=text/plain');
  await expect(page.locator('#corpus-stats')).toContainText('hamlet.txt');
});
