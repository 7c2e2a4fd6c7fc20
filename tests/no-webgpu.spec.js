// The page in Chromium without WebGPU (no --enable-unsafe-webgpu): the CPU fallback.
import { chromiumArgs } from '../playwright.config.js';
import { expect, kiln, open, test, train } from './helpers.js';

test.use({ launchOptions: { executablePath: '/usr/bin/chromium', args: chromiumArgs } });

test('the page explains it and trains on the CPU', async ({ page }) => {
  await open(page, '');
  await expect(page.locator('#fallback-notice')).toBeVisible();
  await expect(page.locator('#fallback-notice')).toContainText('CPU');
  expect(await kiln(page, 'backend')).toBe('cpu');
  await train(page, 5);
  expect((await kiln(page, 'history')).length).toBe(5);
});
