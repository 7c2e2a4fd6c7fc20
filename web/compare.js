// Runs side by side: each run's training loss over the tokens it trained on, and its final
// validation loss and perplexity — so an LSTM and a GPT of one size on one text compare at one
// token budget. The comparison is kept in localStorage and outlives a reload.
import uPlot from 'uplot';

const KEY = 'kiln.compare';
const COLORS = ['#b4441c', '#1c6fb4', '#3a9a3a', '#8a3ab4', '#b49a1c', '#1cb4a4'];

/** Tokens (positions) one optimizer step trains on. */
export const tokensPerStep = ({ model, train }) => train.batch_size * train.grad_accum * model.block_size;

/** A run as the comparison keeps it: a label, [tokens, loss] per step, the last validation loss. */
export function summarize(label, history) {
  return {
    label,
    points: history.map((p) => [p.tokens, p.loss]),
    valLoss: history.findLast((p) => p.valLoss != null)?.valLoss ?? null,
  };
}

/** The comparison in `el` (a chart) and `table` (one row per run). */
export function comparison(el, table) {
  let runs = JSON.parse(localStorage.getItem(KEY) ?? '[]');
  let plot = null;
  const draw = () => {
    localStorage.setItem(KEY, JSON.stringify(runs));
    plot?.destroy();
    plot = null;
    el.replaceChildren();
    const rows = runs.map((r) => {
      const tr = document.createElement('tr');
      const last = r.points.at(-1);
      const cells = [r.label, last ? last[0].toLocaleString('en') : '0', last ? last[1].toFixed(3) : '',
        r.valLoss == null ? '' : r.valLoss.toFixed(3), r.valLoss == null ? '' : Math.exp(r.valLoss).toFixed(2)];
      tr.append(...cells.map((text) => Object.assign(document.createElement('td'), { textContent: text })));
      return tr;
    });
    table.querySelector('tbody').replaceChildren(...rows);
    table.hidden = runs.length === 0;
    if (runs.length === 0) return;
    // One x axis for all: uPlot.join aligns the runs' tokens, with gaps where a run has no point.
    const data = uPlot.join(runs.map((r) => [r.points.map((p) => p[0]), r.points.map((p) => p[1])]));
    plot = new uPlot({
      title: 'training loss over tokens trained',
      width: Math.max(el.clientWidth, 240),
      height: 220,
      scales: { x: { time: false } },
      series: [{ label: 'tokens' }, ...runs.map((r, i) => ({ label: r.label, stroke: COLORS[i % COLORS.length], spanGaps: true }))],
      axes: [{}, { size: 60 }],
    }, data, el);
  };
  draw();
  return {
    add(run) { runs = [...runs, run]; draw(); },
    clear() { runs = []; draw(); },
    /** The runs compared (tests read it). */
    get runs() { return runs; },
  };
}
