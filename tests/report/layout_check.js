// Injected into a copy of report.html: after plotly has drawn, measure what a reader sees and write it
// into a <pre> (id layout-check) as JSON (read back from chromium --dump-dom).
// Per figure: pairs of labels whose boxes intersect (titles, subplot titles, axis titles, tick labels,
// legends, colour bars) and labels that stick out of the figure or the page; the bottom line's box.
function boxes(figure) {
  const items = [];
  const add = (el, group) => {
    const r = el.getBoundingClientRect();
    const text = (el.textContent || "").trim();
    if (r.width > 0 && r.height > 0 && (text !== "" || group === "legend" || group === "colorbar")) {
      items.push({group, text: text.slice(0, 60), r});
    }
  };
  figure.querySelectorAll("text.gtitle").forEach(el => add(el, "title"));
  figure.querySelectorAll("g.annotation").forEach(el => add(el, "annotation"));
  figure.querySelectorAll("text").forEach(el => {
    const c = el.getAttribute("class") || "";
    if (/^[xy]\d*title$/.test(c)) add(el, "axis-title:" + c);
  });
  figure.querySelectorAll("g.xtick > text, g.ytick > text").forEach(el => {
    if (el.closest("g.colorbar")) return;  // the colour bar is measured as a whole
    const axis = el.closest("g[class*='axislayer']");
    const owner = el.parentNode.getAttribute("class") + ":" + (axis ? axis.getAttribute("class") : "") +
      ":" + (el.closest(".subplot") ? el.closest(".subplot").getAttribute("class") : "");
    add(el, "tick:" + owner);
  });
  figure.querySelectorAll("g.legend").forEach(el => add(el, "legend"));
  figure.querySelectorAll("g.colorbar").forEach(el => add(el, "colorbar"));
  return items;
}

function intersect(a, b, slack) {
  const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
  const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
  return w > slack && h > slack;
}

function clippedTables() {
  // tables whose last column would be scrolled out of view (measured with every <details> open)
  document.querySelectorAll("details").forEach(d => { d.open = true; });
  const clipped = [];
  document.querySelectorAll("div.wide > table").forEach(t => {
    const box = t.parentNode;
    if (box.scrollWidth > box.clientWidth + 1) clipped.push(t.getAttribute("class") || "");
  });
  document.querySelectorAll("details").forEach(d => { d.open = false; });
  return clipped;
}

function check() {
  const out = {width: window.innerWidth, height: window.innerHeight, overlaps: [], outside: [], figures: 0};
  const bottom = document.querySelector("section.bottom table, section.bottom");
  const heading = document.getElementById("bottom-line");
  out.bottom_line = bottom ? {top: heading.getBoundingClientRect().top, bottom: bottom.getBoundingClientRect().bottom} : null;
  out.page_overflow = document.documentElement.scrollWidth - document.documentElement.clientWidth;
  document.querySelectorAll("div.plotly-graph-div").forEach(figure => {
    out.figures += 1;
    const frame = figure.getBoundingClientRect();
    const items = boxes(figure);
    for (let i = 0; i < items.length; i++) {
      const a = items[i];
      if (a.r.left < frame.left - 1 || a.r.right > frame.right + 1 || a.r.right > window.innerWidth ||
          a.r.top < frame.top - 1 || a.r.bottom > frame.bottom + 1) {
        out.outside.push({figure: figure.id, group: a.group, text: a.text,
                          by: [frame.left - a.r.left, a.r.right - frame.right, frame.top - a.r.top,
                               a.r.bottom - frame.bottom].map(Math.round)});
      }
      for (let j = i + 1; j < items.length; j++) {
        const b = items[j];
        if (intersect(a.r, b.r, 1)) {
          out.overlaps.push({figure: figure.id, a: a.group + " '" + a.text + "'", b: b.group + " '" + b.text + "'"});
        }
      }
    }
  });
  out.clipped_tables = clippedTables();
  const pre = document.createElement("pre");
  pre.id = "layout-check";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}

window.addEventListener("load", () => setTimeout(check, 300));
