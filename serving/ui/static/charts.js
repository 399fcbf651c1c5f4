// The valuation page's drawings, as SVG built from the API's numbers: the interval as a bar,
// the explanation as a chart of contributions, and a map drawn from coordinates alone (no tile
// server: the page works offline).
"use strict";

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

// The interval [lower, upper] as a band on a price axis, the price as a tick inside it.
function drawIntervalBar(svg, price, interval) {
  clear(svg);
  const width = 560, left = 20, right = width - 20;
  const span = interval.upper - interval.lower || Math.abs(price) || 1;
  const low = Math.min(interval.lower, price) - span * 0.25;
  const high = Math.max(interval.upper, price) + span * 0.25;
  const x = (value) => left + ((value - low) / (high - low)) * (right - left);
  svg.setAttribute("viewBox", `0 0 ${width} 70`);
  svg.appendChild(svgElement("line", { x1: left, y1: 30, x2: right, y2: 30, class: "axis" }));
  svg.appendChild(svgElement("rect", {
    x: x(interval.lower), y: 20, width: Math.max(2, x(interval.upper) - x(interval.lower)),
    height: 20, rx: 4, class: "interval-band",
  }));
  svg.appendChild(svgElement("line", { x1: x(price), y1: 14, x2: x(price), y2: 46, class: "price-tick" }));
  svg.appendChild(svgElement("text", { x: x(interval.lower), y: 62, class: "label", "text-anchor": "middle" },
    formatUf(interval.lower)));
  svg.appendChild(svgElement("text", { x: x(interval.upper), y: 62, class: "label", "text-anchor": "middle" },
    formatUf(interval.upper)));
  svg.appendChild(svgElement("text", { x: x(price), y: 10, class: "label strong", "text-anchor": "middle" },
    formatUf(price)));
}

// Contributions in log-price space, one bar per part, largest first. A part c multiplies the
// price by exp(c): the label says by how much, in percent.
function drawExplanationChart(svg, explanation) {
  clear(svg);
  const parts = Object.entries(explanation.contributions || {})
    .sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]));
  const rowHeight = 24, labelWidth = 150, width = 560, top = 8;
  const textSpace = 60;  // room for a bar's percentage on either side of the longest bars
  const half = (width - labelWidth - 2 * textSpace) / 2;
  const center = labelWidth + textSpace + half;
  const largest = Math.max(1e-9, ...parts.map(([, value]) => Math.abs(value)));
  const height = top * 2 + rowHeight * parts.length;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.appendChild(svgElement("line", { x1: center, y1: 0, x2: center, y2: height, class: "axis" }));
  parts.forEach(([name, value], index) => {
    const y = top + index * rowHeight;
    const length = (Math.abs(value) / largest) * half;
    svg.appendChild(svgElement("text", { x: labelWidth - 8, y: y + 16, class: "label", "text-anchor": "end" },
      name.replaceAll("_", " ")));
    svg.appendChild(svgElement("rect", {
      x: value >= 0 ? center : center - length, y: y + 4, width: Math.max(1, length), height: 16,
      class: value >= 0 ? "bar-up" : "bar-down", "data-feature": name,
    }));
    const percent = (Math.exp(value) - 1) * 100;
    const sign = percent >= 0 ? "+" : "";
    svg.appendChild(svgElement("text", {
      x: value >= 0 ? center + length + 4 : center - length - 4, y: y + 16, class: "label",
      "text-anchor": value >= 0 ? "start" : "end",
    }, `${sign}${percent.toFixed(1)} %`));
  });
}

// The property and its comparables on a plane drawn from latitude and longitude alone
// (equirectangular, scaled by the cosine of the latitude), with a scale bar in kilometres.
function drawMap(svg, property, comparables) {
  clear(svg);
  const width = 360, height = 260, pad = 28;
  const points = [property, ...comparables];
  const lat0 = points.reduce((sum, p) => sum + p.latitude, 0) / points.length;
  const cos = Math.cos((lat0 * Math.PI) / 180);
  const xs = points.map((p) => p.longitude * cos), ys = points.map((p) => p.latitude);
  const minSpan = 0.01;  // degrees (about 1 km): a lone property still gets some surroundings
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (x1 - x0 < minSpan) { const c = (x0 + x1) / 2; x0 = c - minSpan / 2; x1 = c + minSpan / 2; }
  if (y1 - y0 < minSpan) { const c = (y0 + y1) / 2; y0 = c - minSpan / 2; y1 = c + minSpan / 2; }
  const scale = Math.min((width - 2 * pad) / (x1 - x0), (height - 2 * pad) / (y1 - y0));
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  const project = (p) => [width / 2 + (p.longitude * cos - cx) * scale,
                          height / 2 - (p.latitude - cy) * scale];
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.appendChild(svgElement("rect", { x: 0, y: 0, width, height, class: "map-ground" }));
  comparables.forEach((comparable, index) => {
    const [x, y] = project(comparable);
    const [px, py] = project(property);
    svg.appendChild(svgElement("line", { x1: px, y1: py, x2: x, y2: y, class: "map-link" }));
    const dot = svgElement("circle", { cx: x, cy: y, r: 7, class: "map-comparable" });
    dot.appendChild(svgElement("title", {}, `#${index + 1}: ${formatUf(comparable.price)}`));
    svg.appendChild(dot);
    svg.appendChild(svgElement("text", { x, y: y + 4, class: "map-number", "text-anchor": "middle" }, index + 1));
  });
  const [px, py] = project(property);
  const home = svgElement("circle", { cx: px, cy: py, r: 9, class: "map-property" });
  home.appendChild(svgElement("title", {}, "the property"));
  svg.appendChild(home);
  // Scale bar: one degree of latitude is about 111.32 km.
  const kmPerUnit = 111.32;
  const candidates = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20];
  const km = candidates.find((k) => (k / kmPerUnit) * scale >= 50) || 20;
  const length = (km / kmPerUnit) * scale;
  svg.appendChild(svgElement("line", { x1: 12, y1: height - 12, x2: 12 + length, y2: height - 12, class: "map-scale" }));
  svg.appendChild(svgElement("text", { x: 12, y: height - 17, class: "label" }, `${km} km`));
  svg.appendChild(svgElement("text", { x: width - 12, y: 16, class: "label", "text-anchor": "end" }, "N ↑"));
}
