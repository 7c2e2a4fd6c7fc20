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

/**
 * A labelled scatter plot in `el`: `points` are [x, y], `labels` name them (the first `maxLabels`
 * are written beside their points; hovering any point names it in the legend). Returns the chart.
 */
export function scatterChart(el, title, points, labels, { xLabel, yLabel, maxLabels = 300 }) {
  // uPlot plots series over an ascending x: sort the points by x and keep their names in step.
  const order = points.map((_, i) => i).sort((a, b) => points[a][0] - points[b][0]);
  const data = [order.map((i) => points[i][0]), order.map((i) => points[i][1])];
  const name = (idx) => labels[order[idx]];
  const labelled = order.map((i) => i < maxLabels);
  const width = Math.max(el.clientWidth, 240);
  el.replaceChildren();
  return new uPlot(
    {
      title,
      width,
      height: Math.min(Math.max(width * 0.6, 240), 520),
      scales: { x: { time: false } },
      series: [
        { label: xLabel, value: (u, v) => (v == null ? '' : format(v)) },
        {
          label: yLabel,
          stroke: COLORS[1],
          paths: () => null,
          points: { show: true, size: 5, fill: COLORS[1] },
          value: (u, v, si, idx) => (idx == null ? '' : `${format(v)} — ${JSON.stringify(name(idx))}`),
        },
      ],
      axes: [{ label: xLabel }, { label: yLabel, size: 60 }],
      hooks: {
        draw: [(u) => {
          const { ctx } = u;
          ctx.save();
          ctx.font = `${Math.round(11 * devicePixelRatio)}px monospace`;
          ctx.fillStyle = '#222';
          data[0].forEach((x, idx) => {
            if (!labelled[idx]) return;
            ctx.fillText(name(idx), u.valToPos(x, 'x', true) + 4, u.valToPos(data[1][idx], 'y', true) - 4);
          });
          ctx.restore();
        }],
      },
    },
    data,
    el,
  );
}
