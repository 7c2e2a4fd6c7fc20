// Live line charts (uPlot): one x axis (the step), one or more series that may have gaps.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

const COLORS = ['#b4441c', '#1c6fb4', '#3a9a3a'];

/** A chart in `el` titled `title` with the named series; `push(step, values)` adds a point. */
export function lineChart(el, title, names) {
  const data = [[], ...names.map(() => [])];
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
  return {
    push(step, values) {
      data[0].push(step);
      values.forEach((v, i) => data[i + 1].push(v ?? null));
      plot.setData(data);
    },
    reset() {
      data.forEach((column) => { column.length = 0; });
      plot.setData(data);
    },
    /** Points plotted so far (tests read it to see the chart is live). */
    get points() {
      return data[0].length;
    },
  };
}
