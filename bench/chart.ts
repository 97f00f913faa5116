// A grouped bar chart as SVG text, drawn by hand: no dependency for one picture.

export interface BarGroup {
  label: string;
  /** One value per series; null draws no bar (the figure is missing). */
  values: Array<number | null>;
}

export interface BarChart {
  title: string;
  unit: string;
  series: string[];
  groups: BarGroup[];
}

const COLORS = ['#4472c4', '#ed7d31', '#70ad47', '#a5a5a5'];
const WIDTH = 720;
const HEIGHT = 420;
const MARGIN = { top: 50, right: 20, bottom: 70, left: 60 };

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A tick step of 1, 2 or 5 times a power of ten giving about five ticks up to `max`. */
function tickStep(max: number): number {
  const raw = max / 5;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const factor of [1, 2, 5, 10]) if (factor * power >= raw) return factor * power;
  return 10 * power;
}

export function barChartSvg(chart: BarChart): string {
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const values = chart.groups.flatMap((group) => group.values).filter((v): v is number => v !== null && Number.isFinite(v));
  const step = tickStep(Math.max(1e-9, ...values));
  const top = Math.max(step, Math.ceil(Math.max(0, ...values) / step) * step);
  const y = (value: number): number => MARGIN.top + plotHeight - (value / top) * plotHeight;
  const groupWidth = plotWidth / Math.max(1, chart.groups.length);
  const barWidth = (groupWidth * 0.7) / Math.max(1, chart.series.length);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    `<text x="${WIDTH / 2}" y="24" text-anchor="middle" font-size="16">${escapeXml(chart.title)}</text>`,
  ];
  for (let tick = 0; tick <= top + step / 2; tick += step) {
    const ty = y(tick).toFixed(1);
    parts.push(`<line x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${ty}" y2="${ty}" stroke="#ddd"/>`);
    parts.push(`<text x="${MARGIN.left - 6}" y="${ty}" text-anchor="end" dominant-baseline="middle">${Number(tick.toPrecision(6))}</text>`);
  }
  parts.push(`<text transform="translate(16 ${MARGIN.top + plotHeight / 2}) rotate(-90)" text-anchor="middle">${escapeXml(chart.unit)}</text>`);
  chart.groups.forEach((group, g) => {
    const x0 = MARGIN.left + g * groupWidth + groupWidth * 0.15;
    group.values.forEach((value, s) => {
      const x = x0 + s * barWidth;
      if (value === null || !Number.isFinite(value)) {
        parts.push(`<text x="${(x + barWidth / 2).toFixed(1)}" y="${y(0) - 4}" text-anchor="middle" fill="#c00">n/a</text>`);
        return;
      }
      const height = y(0) - y(value);
      parts.push(`<rect x="${x.toFixed(1)}" y="${y(value).toFixed(1)}" width="${(barWidth - 2).toFixed(1)}" height="${height.toFixed(1)}" fill="${COLORS[s % COLORS.length]}"/>`);
      parts.push(`<text x="${(x + barWidth / 2).toFixed(1)}" y="${(y(value) - 4).toFixed(1)}" text-anchor="middle" font-size="10">${value.toFixed(2)}</text>`);
    });
    parts.push(`<text x="${(MARGIN.left + (g + 0.5) * groupWidth).toFixed(1)}" y="${HEIGHT - MARGIN.bottom + 18}" text-anchor="middle">${escapeXml(group.label)}</text>`);
  });
  parts.push(`<line x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${y(0)}" y2="${y(0)}" stroke="black"/>`);
  chart.series.forEach((name, s) => {
    const lx = MARGIN.left + s * 160;
    const ly = HEIGHT - 22;
    parts.push(`<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${COLORS[s % COLORS.length]}"/>`);
    parts.push(`<text x="${lx + 18}" y="${ly}">${escapeXml(name)}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
