// Checkpoints in a browser without OPFS (navigator.storage.getDirectory removed): IndexedDB.
import { customText, expect, generate, kiln, open, test, train } from './helpers.js';

test.beforeEach(({ page }) => page.addInitScript(() => { delete StorageManager.prototype.getDirectory; }));

test('without OPFS a checkpoint goes to IndexedDB with its text and survives a reload', async ({ page }) => {
  await open(page, '?backend=cpu');
  await expect(page.locator('#storage-kind')).toContainText('IndexedDB');
  await page.setInputFiles('#file', { name: 'pottery.txt', mimeType: 'text/plain', buffer: Buffer.from(customText()) });
  await expect(page.locator('#corpus-stats')).toContainText('pottery.txt');
  await train(page, 4);
  await page.fill('#ckpt-name', 'idb');
  await page.click('#save-browser');
  await expect(page.locator('#ckpt-status')).toHaveText('Saved "idb" in this browser at step 4.');
  const before = await generate(page, 2);
  await page.reload();
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  await page.locator('#saved tr[data-name="idb"] button.load').click();
  await expect(page.locator('#ckpt-status')).toHaveText('Loaded "idb" at step 4.');
  await expect(page.locator('#corpus-stats')).toContainText('pottery.txt');
  expect(await kiln(page, 'history.length')).toBe(4);
  expect(await generate(page, 2)).toBe(before);
});
