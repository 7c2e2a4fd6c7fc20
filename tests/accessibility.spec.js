// The page in front of a class: every control reachable by keyboard with a visible focus, charts
// readable as text, a presentation mode, and no serious accessibility violations (axe-core).
import AxeBuilder from '@axe-core/playwright';
import { expect, open, test, train } from './helpers.js';

/** axe-core's serious and critical findings, one line each. */
async function seriousViolations(page) {
  const { violations } = await new AxeBuilder({ page }).analyze();
  console.log(`axe: ${violations.map((v) => `${v.id} (${v.impact}, ${v.nodes.length})`).join(', ') || 'no violations'}`);
  return violations
    .filter((v) => ['serious', 'critical'].includes(v.impact))
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

test('keyboard, visible focus, charts as text, presentation mode; axe finds nothing serious', async ({ page }) => {
  await open(page, '?backend=cpu');
  await train(page, 3, 3);
  // The latest values of each chart, as text.
  const history = await page.evaluate(() => window.kiln.history);
  const last = history.at(-1);
  await expect(page.locator('#chart-loss .chart-text')).toHaveText(
    `loss at step 3: train ${Number(last.loss.toPrecision(3))}, validation ${Number(last.valLoss.toPrecision(3))}`);
  await expect(page.locator('#chart-lr .chart-text')).toContainText('learning rate at step 3: lr ');
  // The Inspect views are on the page axe checks, and the keyboard reaches their maps.
  await page.click('#attention');
  await expect(page.locator('#attention-detail caption')).toContainText('Layer 1, head 1');
  await page.click('#embeddings');
  await expect(page.locator('#embeddings-chart .chart-text')).toContainText('tokens; the two axes show');

  expect(await seriousViolations(page)).toEqual([]);

  // Tab through the page: every visible, enabled control gets the focus, and shows it.
  // (What a closed <details> holds is reached by opening it: its summary is the control.)
  const controls = await page.evaluate(() => [...document.querySelectorAll('button, input, select, textarea, summary, [tabindex="0"], a[href]')]
    .filter((el) => !el.disabled && !el.closest('[hidden]') && (el.tagName === 'SUMMARY' || !el.closest('details:not([open])')) &&
      (el.offsetParent !== null || el.classList.contains('visually-hidden')))
    .map((el) => el.id || el.dataset.key || el.outerHTML.slice(0, 60)));
  const reached = new Set();
  // Round the whole page (Tab wraps past the last control to the first).
  for (let i = 0; i < 2 * controls.length + 5 && controls.some((c) => !reached.has(c)); i++) {
    await page.keyboard.press('Tab');
    const focus = await page.evaluate(() => {
      const el = document.activeElement;
      if (el === document.body) return null; // between the last control and the first
      const shown = el.classList.contains('visually-hidden') ? el.closest('label') : el;
      return { name: el.id || el.dataset.key || el.outerHTML.slice(0, 60), outline: getComputedStyle(shown).outlineStyle };
    });
    if (!focus) continue;
    expect(focus.outline, `focus on ${focus.name} is visible`).not.toBe('none');
    reached.add(focus.name);
  }
  expect(controls.filter((c) => !reached.has(c))).toEqual([]);

  // The drop zone opens the file chooser from the keyboard: Enter clicks its file input.
  await page.evaluate(() => document.querySelector('#file').addEventListener('click', (e) => {
    e.preventDefault(); // no dialog in a headless test
    window.fileClicked = true;
  }));
  await page.locator('#drop').focus();
  await page.keyboard.press('Enter');
  await expect.poll(() => page.evaluate(() => window.fileClicked === true)).toBe(true);

  // Presentation mode: larger type, still nothing serious.
  const size = () => page.evaluate(() => parseFloat(getComputedStyle(document.body).fontSize));
  const normal = await size();
  await page.click('#presentation');
  await expect(page.locator('#presentation')).toHaveAttribute('aria-pressed', 'true');
  expect(await size()).toBeCloseTo(normal * 1.5, 1);
  expect(await seriousViolations(page)).toEqual([]);
});
