// The LSTM family in the page: chosen from the presets or by a link, trained, sampled, and the
// Inspect view it has no part for says so; then compared with a GPT, live and saved runs.
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

test('runs compare over the tokens they trained on: live runs, a saved one, and after a reload', async ({ page }) => {
  await open(page, '?backend=cpu&preset=tiny-lstm&lr=0.01');
  await page.click('#compare-add');
  await expect(page.locator('#error')).toContainText('no steps yet');
  await train(page, 12);
  await page.click('#compare-add');

  await page.selectOption('#preset', 'tiny');
  await train(page, 12);
  await page.click('#compare-add');
  await page.fill('#ckpt-name', 'gpt-run');
  await page.click('#save-browser');
  await expect(page.locator('#ckpt-status')).toContainText('Saved "gpt-run"');

  const rows = page.locator('#compare-runs tbody tr');
  await expect(rows).toHaveCount(2);
  await expect(rows.nth(0)).toContainText('LSTM 2×32');
  await expect(rows.nth(1)).toContainText('GPT 2×32');
  // Both trained 12 steps of 8 × 32 positions: the same token budget on one axis.
  const runs = await kiln(page, 'compare.runs');
  expect(runs.map((r) => r.points.at(-1)[0])).toEqual([3072, 3072]);
  expect(runs.every((r) => r.valLoss > 0)).toBe(true);
  await expect(page.locator('#chart-compare .u-legend')).toContainText('LSTM 2×32');

  // The comparison outlives a reload, and a saved run joins it from the Checkpoints table.
  await page.reload();
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  await expect(rows).toHaveCount(2);
  await page.locator('#saved tr[data-name="gpt-run"] button.compare').click();
  await expect(rows).toHaveCount(3);
  await expect(rows.nth(2)).toContainText('gpt-run: GPT 2×32');
  expect((await kiln(page, 'compare.runs'))[2].points).toEqual(runs[1].points);
  await page.click('#compare-clear');
  await expect(rows).toHaveCount(0);
});
