// A setup passed on: settings in the page address (a copied link opens the same setup; what the
// page cannot use is reported), and a downloaded checkpoint opened by dropping it on the page.
import { downloads, expect, generate, open, setField, test, train } from './helpers.js';

const value = (page, selector) => page.locator(selector).inputValue();

test('settings round-trip through the page address; unknown and invalid ones are reported', async ({ page }) => {
  await open(page, '?backend=cpu&preset=tiny&n_layer=3&lr=0.002&kernels=false&tokenizer=bpe&vocab=300' +
    '&temperature=0.5&seed=9&sample_tokens=40&bogus=1&n_embd=abc&top_k=2.5');
  const problems = page.locator('#address-problems');
  await expect(problems).toContainText('"bogus" is not a setting Kiln knows');
  await expect(problems).toContainText('n_embd=abc is not a number');
  await expect(problems).toContainText('top_k=2.5 is not a whole number');
  expect(await value(page, '[data-key="model.n_layer"]')).toBe('3');
  expect(await value(page, '[data-key="model.n_embd"]')).toBe('32'); // the preset's
  expect(await value(page, '[data-key="train.lr"]')).toBe('0.002');
  await expect(page.locator('[data-key="model.kernels"]')).not.toBeChecked();
  expect(await value(page, '#tok-kind')).toBe('bpe');
  await expect(page.locator('#tok-stats')).toHaveText(/^(2[6-9]\d|300) tokens$/);
  expect(await value(page, '#temperature')).toBe('0.5');
  expect(await value(page, '#sample-tokens')).toBe('40');
  expect(await page.evaluate('window.kiln.preset.model.n_layer')).toBe(3);

  // A field changed by hand goes into the link with the rest; the preset's values stay out.
  await setField(page, 'model.n_head', 1);
  await page.click('#copy-link');
  await expect(page.locator('#share-status')).not.toBeEmpty(); // the link is written, then copied
  const link = new URL(await value(page, '#share-link'));
  expect(Object.fromEntries(link.searchParams)).toEqual({
    preset: 'tiny', n_layer: '3', n_head: '1', lr: '0.002', kernels: 'false', tokenizer: 'bpe',
    vocab: '300', temperature: '0.5', seed: '9', sample_tokens: '40',
  });
  await open(page, `${link.search}&backend=cpu`);
  await expect(page.locator('#address-problems')).toBeHidden();
  expect(await value(page, '[data-key="model.n_head"]')).toBe('1');
  expect(await value(page, '[data-key="model.n_layer"]')).toBe('3');
  expect(await value(page, '#tok-kind')).toBe('bpe');
  expect(await value(page, '#seed')).toBe('9');
  await train(page, 2);
});

test('a downloaded checkpoint dropped on the page opens: the same model', async ({ page }) => {
  await open(page, '?backend=cpu');
  await train(page, 4);
  const before = await generate(page, 5);
  const files = (await downloads(page, '#download', 3)).map((f) => ({ name: f.name, bytes: [...f.buffer] }));
  await page.reload();
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  const dropped = await page.evaluateHandle((list) => {
    const data = new DataTransfer();
    for (const f of list) data.items.add(new File([new Uint8Array(f.bytes)], f.name));
    return data;
  }, files);
  await page.dispatchEvent('#drop', 'drop', { dataTransfer: dropped });
  await expect(page.locator('#ckpt-status')).toHaveText('Loaded the uploaded checkpoint at step 4.');
  expect(await generate(page, 5)).toBe(before);
});
