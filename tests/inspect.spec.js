// The Inspect views, their numbers checked against each other and against `score`: the next
// token's probability is the surprise of that token once it is in the text.
import { expect, kiln, open, test, train } from './helpers.js';

test('next-token bars and the surprise view agree with the model', async ({ page }) => {
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
});
