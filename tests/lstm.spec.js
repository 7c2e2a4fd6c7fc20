// The LSTM family in the page: chosen from the presets or by a link, trained, sampled, and the
// Inspect view it has no part for says so.
import { expect, generate, kiln, open, setField, test, train } from './helpers.js';

test('an LSTM trains in the page, generates, and has no attention to show', async ({ page }) => {
  // A shared link can ask for the family: the fields follow.
  await open(page, '?backend=cpu&preset=tiny&arch=lstm');
  expect(await kiln(page, 'preset.model.arch')).toBe('lstm');
  await expect(page.locator('#n-head')).toBeDisabled();

  // ... and the preset list has the LSTM's own.
  await page.selectOption('#preset', 'tiny-lstm');
  await expect(page.locator('[data-key="model.arch"]')).toHaveValue('lstm');
  await expect(page.locator('#params')).toContainText('parameters');
  await setField(page, 'train.lr', 0.01);
  await train(page, 30);
  const losses = (await kiln(page, 'history')).map((p) => p.loss);
  expect(losses).toHaveLength(30);
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  expect(mean(losses.slice(-5))).toBeLessThan(mean(losses.slice(0, 5)) - 0.3);

  // No position limit: 80 characters past a 32-character context, from the carried state.
  const text = await generate(page, 3, 80);
  expect([...text]).toHaveLength(80);

  await page.click('#attention');
  await expect(page.locator('#inspect-error')).toContainText('an LSTM has no attention');
});
