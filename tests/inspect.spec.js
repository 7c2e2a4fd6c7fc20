// The Inspect views, their numbers checked against each other and against `score`: the next
// token's probability is the surprise of that token once it is in the text; the attention maps
// and the embeddings' PCA are what the page draws. (Native tests check the numbers themselves
// against plain computations from the weights.)
import { expect, kiln, open, test, train } from './helpers.js';

test('next-token bars, surprise, attention and embeddings show the model', async ({ page }) => {
  await open(page, '?backend=cpu');
  await train(page, 20);
  await page.fill('#prompt', 'ROMEO:\nWhat ');
  await page.click('#next-tokens');
  await expect(page.locator('#next-list li')).toHaveCount(10);
  const top = await kiln(page, 'nextTokens');
  const probs = top.map(([, p]) => p);
  expect(probs).toEqual([...probs].sort((a, b) => b - a));
  expect(probs.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(1 + 1e-5);
  await expect(page.locator('#next-list li').first()).toContainText(`${(100 * probs[0]).toFixed(1)}%`);

  // Choosing the second token continues the prompt with it, and the bars move on.
  await page.locator('#next-list li button').nth(1).click();
  await expect(page.locator('#prompt')).toHaveValue(`ROMEO:\nWhat ${top[1][0]}`);
  await expect.poll(() => kiln(page, 'nextTokens[0]')).not.toEqual(top[0]);

  await page.click('#surprise');
  await expect(page.locator('#surprise-text span')).toHaveCount(13);
  const s = await kiln(page, 'surprise');
  expect(s.per_token.map(([t]) => t).join('')).toBe(`ROMEO:\nWhat ${top[1][0]}`);
  expect(s.per_token[0][1]).toBeNull();
  const last = s.per_token.at(-1)[1];
  expect(Math.abs(last - Math.log(top[1][1]))).toBeLessThan(1e-4);
  const total = s.per_token.slice(1).reduce((a, [, lp]) => a + lp, 0);
  expect(Math.abs(total - s.log_prob)).toBeLessThan(1e-4);
  await expect(page.locator('#surprise-total')).toContainText(`log-probability ${s.log_prob.toFixed(2)} over 12 tokens`);
  // The same total as "Score the prompt".
  await page.click('#score-prompt');
  await expect(page.locator('#score')).toHaveText(`12 tokens, log-probability ${s.log_prob.toFixed(2)}, perplexity ${s.perplexity.toFixed(2)}`);

  // Attention: one map per layer × head over the prompt's last 24 tokens, causal rows summing
  // to 1, drawn pixel for pixel and listed in the chosen head's table.
  const prompt = 'ROMEO:\nWhat light through yonder window breaks?';
  await page.fill('#prompt', prompt);
  await page.click('#attention');
  await expect(page.locator('#attention-detail td[title]')).toHaveCount(24 * 24);
  const maps = await kiln(page, 'attention');
  const [layers, heads] = [await page.inputValue('[data-key="model.n_layer"]'), await page.inputValue('[data-key="model.n_head"]')];
  expect([maps.weights.length, maps.weights[0].length]).toEqual([Number(layers), Number(heads)]);
  expect(maps.tokens.join('')).toBe(prompt.slice(-24));
  for (const rows of maps.weights.flat()) {
    rows.forEach((row, q) => {
      expect(Math.abs(row.reduce((a, b) => a + b, 0) - 1)).toBeLessThan(1e-5);
      expect(row.slice(q + 1).every((w) => w === 0)).toBe(true);
    });
  }
  await expect(page.locator('#attention-grid canvas')).toHaveCount(maps.weights.flat().length);
  const deep = maps.weights.length - 1;
  await page.click(`#attention-grid button[data-layer="${deep}"][data-head="1"]`);
  await expect(page.locator('#attention-detail caption')).toContainText(`Layer ${deep + 1}, head 2`);
  const cell = page.locator('#attention-detail tbody tr').nth(5).locator('td').nth(3);
  await expect(cell).toHaveAttribute('title', new RegExp(`: ${maps.weights[deep][1][5][3].toFixed(3)}$`));
  // The small map's pixel (query 5, key 3): white minus the weight's share of the blue.
  const red = await page.evaluate(({ layer }) => {
    const canvas = document.querySelector(`#attention-grid button[data-layer="${layer}"][data-head="1"] canvas`);
    return canvas.getContext('2d').getImageData(3, 5, 1, 1).data[0];
  }, { layer: deep });
  expect(Math.abs(red - (255 - 227 * maps.weights[deep][1][5][3]))).toBeLessThanOrEqual(1);

  // Embeddings: every token a point, centred, the axes' variances in the ratio of their shares.
  await page.click('#embeddings');
  await expect(page.locator('#embeddings-chart .chart-text')).toContainText('tokens; the two axes show');
  const e = await kiln(page, 'embeddings');
  expect(e.points.length).toBe(e.tokens.length);
  const variance = (k) => e.points.reduce((a, p) => a + p[k] ** 2, 0) / e.points.length;
  expect(Math.abs(e.points.reduce((a, p) => a + p[0], 0)) / e.points.length).toBeLessThan(1e-5);
  expect(Math.abs(variance(0) / variance(1) - e.explained[0] / e.explained[1])).toBeLessThan(1e-3);
  expect(e.explained[0]).toBeGreaterThanOrEqual(e.explained[1]);
  await expect(page.locator('#embeddings-chart .u-title')).toHaveText('Token embeddings, PCA');
  await expect(page.locator('#embeddings-chart')).toContainText(`PC1 (${(100 * e.explained[0]).toFixed(1)}% of the variance)`);
});
