// Live line charts (uPlot): one x axis (the step), one or more series that may have gaps.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

const COLORS = ['#b4441c', '#1c6fb4', '#3a9a3a'];

/** Numbers as a reader wants them: 3 significant digits, exponent form when very small. */
const format = (v) => (Math.abs(v) < 1e-3 && v !== 0 ? v.toExponential(2) : Number(v.toPrecision(3)).toString());

/**
 * A chart in `el` titled `title` with the named series; `push(step, values)` adds a point. Below
 * it, the latest values as text: what a screen reader (or a projector's back row) gets.
 */
export function lineChart(el, title, names) {
  const data = [[], ...names.map(() => [])];
  const text = Object.assign(document.createElement('p'), { className: 'chart-text' });
  const describe = () => {
    const last = data[0].length - 1;
    if (last < 0) {
      text.textContent = `${title}: no points yet`;
      return;
    }
    // A series with a gap at the last step (validation) reports its latest point.
    const latest = names.map((name, i) => {
      const at = data[i + 1].findLastIndex((v) => v != null);
      return at < 0 ? null : `${name} ${format(data[i + 1][at])}${at === last ? '' : ` (step ${data[0][at]})`}`;
    }).filter(Boolean);
    text.textContent = `${title} at step ${data[0][last]}: ${latest.join(', ')}`;
  };
  const plot = new uPlot(
    {
      title,
      width: Math.max(el.clientWidth, 240),
      height: 180,
      scales: { x: { time: false } },
      series: [{ label: 'step' }, ...names.map((label, i) => ({ label, stroke: COLORS[i], spanGaps: true, points: { show: true, size: 3 } }))],
      axes: [{}, { size: 60 }],
    },
    data,
    el,
  );
  el.append(text);
  describe();
  return {
    push(step, values) {
      data[0].push(step);
      values.forEach((v, i) => data[i + 1].push(v ?? null));
      plot.setData(data);
      describe();
    },
    reset() {
      data.forEach((column) => { column.length = 0; });
      plot.setData(data);
      describe();
    },
    /** Fits the chart to its element's current width (e.g. after the page's layout changed). */
    resize() {
      const width = Math.max(el.clientWidth, 240);
      plot.setSize({ width, height: Math.min(Math.max(width / 3, 180), 360) });
    },
    /** Points plotted so far (tests read it to see the chart is live). */
    get points() {
      return data[0].length;
    },
  };
}
