// The encoder family in the page: masked-LM pretraining on WebGPU (the bidirectional attention
// kernels under the browser's WGSL compiler) with the fill-in-the-blank panel in place of
// generation; then the pretrained encoder finetuned into a [CLS] classifier, which goes to
// transformers' BERT files and back; WordPiece; and the one-button "who wrote this line" demo.
import { downloads, expect, file, kiln, open, setField, test, train } from './helpers.js';

const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

test('an encoder pretrains by masking on WebGPU and fills in the blanks', async ({ page }) => {
  await open(page, '?backend=wgpu&preset=tiny-bert');
  await expect(page.locator('[data-key="model.arch"]')).toHaveValue('bert');
  await setField(page, 'train.lr', 0.01);
  await train(page, 12, 12);
  const history = await kiln(page, 'history');
  const losses = history.map((p) => p.loss);
  expect(mean(losses.slice(-3))).toBeLessThan(mean(losses.slice(0, 3)) - 0.2);
  // Its evaluation counts the masked tokens it guesses; it writes no sample.
  expect(history.at(-1).maskedAccuracy).toBeGreaterThan(0);
  await expect(page.locator('#step')).toContainText('masked tokens right');
  await expect(page.locator('#generation')).toBeHidden();
  await expect(page.locator('#fill')).toBeVisible();

  await page.fill('#fill-text', 'to be or [MASK]ot to [MASK]e');
  await page.click('#fill-run');
  await expect(page.locator('#fill-results li')).toHaveCount(2);
  const blanks = await kiln(page, 'fill');
  for (const { guesses } of blanks) {
    expect(guesses).toHaveLength(5);
    const probs = guesses.map(([, p]) => p);
    expect(probs).toEqual([...probs].sort((a, b) => b - a));
    expect(guesses.every(([t]) => !t.startsWith('['))).toBe(true);
  }
  await page.fill('#fill-text', 'no blank');
  await page.click('#fill-run');
  await expect(page.locator('#fill-results')).toContainText('write [MASK]');
});

test('a pretrained encoder finetunes into a [CLS] classifier', async ({ page }) => {
  await open(page, '?backend=cpu&preset=tiny-bert');
  await train(page, 20);
  await page.check('#finetune');
  // Letters from the first half of the alphabet are "early", from the second "late".
  const rows = ['text,label'];
  for (let i = 0; i < 120; i++) {
    const letters = i % 2 ? 'nopqrstuvwxyz' : 'abcdefghijklm';
    const word = [...Array(4 + (i % 7)).keys()].map((j) => letters[(i * 7 + j * 3) % 13]).join('');
    rows.push(`${word},${i % 2 ? 'late' : 'early'}`);
  }
  await page.setInputFiles('#file', file('letters.csv', rows.join('\n')));
  await expect(page.locator('#corpus-stats')).toContainText('classes: early, late');
  await train(page, 60, 60);
  expect(await kiln(page, 'task')).toEqual({ kind: 'classify', classes: ['early', 'late'], pooling: 'cls' });
  await expect(page.locator('#classifier')).toBeVisible();
  await expect(page.locator('#fill')).toBeHidden();
  expect((await kiln(page, 'report')).accuracy).toBeGreaterThanOrEqual(0.9);
  await page.fill('#predict-text', 'abcabc');
  await page.click('#predict');
  await expect(page.locator('#prediction li').first()).toContainText('early:');
  const before = await page.locator('#prediction').textContent();

  // For transformers it is a BertForSequenceClassification, and it uploads back as one.
  const uploads = await downloads(page, '#download-transformers', 4);
  const config = JSON.parse(uploads.find((f) => f.name === 'config.json').buffer.toString());
  expect(config).toMatchObject({ model_type: 'bert', architectures: ['BertForSequenceClassification'],
    id2label: { 0: 'early', 1: 'late' } });
  const tokenizer = JSON.parse(uploads.find((f) => f.name === 'tokenizer.json').buffer.toString());
  expect(tokenizer.post_processor.type).toBe('TemplateProcessing');
  await page.setInputFiles('#upload', uploads);
  await expect(page.locator('#ckpt-status')).toHaveText('Loaded the BERT model at step 0.');
  await page.click('#predict');
  await expect(page.locator('#prediction')).toHaveText(before);
});

test('an encoder on WordPiece, chosen by the shared link, fills blanks with word pieces', async ({ page }) => {
  await open(page, '?backend=cpu&preset=tiny-bert&tokenizer=wordpiece&vocab=400');
  await expect(page.locator('#tok-kind')).toHaveValue('wordpiece');
  await expect(page.locator('#tok-stats')).toHaveText('400 tokens');
  await train(page, 10);
  await page.fill('#fill-text', 'to be or not to [MASK]');
  await page.click('#fill-run');
  await expect(page.locator('#fill-results li')).toHaveCount(1);
  const [{ guesses }] = await kiln(page, 'fill');
  expect(guesses).toHaveLength(5);
  // Pieces of words: letters (a "##" prefix continues a word) or punctuation, no specials.
  for (const [piece] of guesses) expect(piece).toMatch(/^(##)?[^\s[]+$/);
});

/** The demo's steps per phase, and the held-out accuracy its pretrained encoder must reach. */
const AUTHORSHIP_STEPS = 100;
const AUTHORSHIP_BOUND = 0.6;

test('the authorship demo tells Shakespeare from Milton on held-out passages', async ({ page }) => {
  await open(page, '?backend=cpu&preset=authorship-bert');
  await setField(page, 'train.max_steps', AUTHORSHIP_STEPS);
  await setField(page, 'train.eval_interval', 0);
  // The demo's recipe (few labels, word pieces), small: 5 labelled passages of 18 per author.
  await page.fill('#authorship-passages', '20');
  await page.fill('#authorship-labelled', '5');
  await page.fill('#authorship-pretrain-steps', String(2 * AUTHORSHIP_STEPS));
  await page.click('#demo-authorship');
  await expect(page.locator('#authorship-result')).toContainText('then finetuned', { timeout: 6 * 60_000 });
  const { scratch, pretrained } = await kiln(page, 'authorship');
  // 20 passages per author: 2 of 40 lines each held out.
  expect([scratch.examples, pretrained.examples]).toEqual([160, 160]);
  expect(pretrained.accuracy).toBeGreaterThanOrEqual(AUTHORSHIP_BOUND);
  expect(await page.inputValue('#tok-kind')).toBe('wordpiece');
  // 5 passages of 40 lines per author trained, 2 × 40 validated.
  await expect(page.locator('#corpus-stats')).toContainText('training on 400, validating on 160');
  // The pretraining's steps were the demo's; the model's steps are back in the field.
  expect(await page.inputValue('#steps')).toBe(String(AUTHORSHIP_STEPS));
  expect(await kiln(page, 'task')).toEqual({ kind: 'classify', classes: ['milton', 'shakespeare'], pooling: 'cls' });
  await expect(page.locator('#classifier')).toBeVisible();
  await page.fill('#predict-text', 'Of Man\'s first disobedience, and the fruit');
  await page.click('#predict');
  await expect(page.locator('#prediction li')).toHaveCount(2);
});
