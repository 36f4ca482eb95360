// Glimpse web page: the comparison view. Methods ticked under "Compare with" run in the same
// job as the chosen method (params.methods, the chosen one first), on the same superpixels;
// the result's comparison is shown as the server's side-by-side figure
// (figure.png?compare=true), a table of each method's cost and faithfulness, and a matrix of
// how alike their superpixel rankings are.
"use strict";
const GlimpseCompare = (() => {
  const $ = (id) => document.getElementById(id);
  const NAMES = {
    lime: "LIME", kernel_shap: "Kernel SHAP", partition_shap: "Partition SHAP",
    gradcam: "Grad-CAM", occlusion: "Occlusion", integrated_gradients: "Integrated Gradients",
    xrai: "XRAI",
  };
  const name = (method) => NAMES[method] || method;
  const fixed = (value, digits = 3) => (value == null ? "—" : value.toFixed(digits));

  // params.methods for the form: the chosen method, then every other one ticked; null when
  // none is ticked (one method, as before).
  function methods(chosen) {
    const ticked = [...document.querySelectorAll("input[name=compare]:checked")]
      .map((box) => box.value)
      .filter((m) => m !== chosen);
    return ticked.length ? [chosen, ...ticked] : null;
  }

  // The boxes follow what the live workers offer, as the method list does.
  function offer(offered) {
    for (const box of document.querySelectorAll("input[name=compare]")) {
      box.disabled = offered.size > 0 && !offered.has(box.value);
      if (box.disabled) box.checked = false;
    }
  }

  function cell(tag, text, title) {
    const el = document.createElement(tag);
    el.textContent = text;
    if (title) el.title = title;
    return el;
  }

  function costTable(comparison) {
    const rows = comparison.methods.map((m) => {
      const q = m.explanations[0].quality;
      const tr = document.createElement("tr");
      tr.dataset.method = m.method;
      const evaluations = m.backward_passes
        ? `${m.model_evaluations} (${m.backward_passes} backward)`
        : String(m.model_evaluations);
      tr.append(cell("th", name(m.method)), cell("td", `${m.seconds.toFixed(2)} s`),
        cell("td", evaluations), cell("td", fixed(q && q.deletion_auc)),
        cell("td", fixed(q && q.insertion_auc)));
      return tr;
    });
    $("compare-table").tBodies[0].replaceChildren(...rows);
  }

  // Spearman above the diagonal, top-k overlap below, for the first explained class.
  function agreementMatrix(comparison, classIndex) {
    const order = comparison.methods.map((m) => m.method);
    const found = new Map();
    for (const a of comparison.agreement) {
      if (a.class_index === classIndex) found.set(a.methods.join("|"), a);
    }
    const head = document.createElement("tr");
    head.append(cell("th", ""), ...order.map((m) => cell("th", name(m))));
    const rows = order.map((row, i) => {
      const tr = document.createElement("tr");
      tr.append(cell("th", name(row)));
      order.forEach((col, j) => {
        if (i === j) return tr.append(cell("td", "—"));
        const a = found.get(i < j ? `${row}|${col}` : `${col}|${row}`);
        if (!a) return tr.append(cell("td", ""));
        if (i < j) return tr.append(cell("td", a.spearman.toFixed(2), "Spearman rank agreement"));
        const shared = Math.round(a.top_k_overlap * a.k);
        return tr.append(cell("td", `${shared} of ${a.k}`, `shared among the top ${a.k} superpixels`));
      });
      return tr;
    });
    $("agreement-table").tHead.replaceChildren(head);
    $("agreement-table").tBodies[0].replaceChildren(...rows);
  }

  // setImage: the page's loader (it carries the API key where there is one).
  function show(job, setImage) {
    const comparison = job.result && job.result.comparison;
    $("comparison").hidden = !comparison;
    if (!comparison) return;
    const first = job.result.explanations[0];
    setImage($("compare-figure"), `/v1/explanations/${job.id}/figure.png?compare=true`);
    $("compare-figure").alt = `Every method's map of ${first.label}, side by side`;
    costTable(comparison);
    agreementMatrix(comparison, first.class_index);
    $("agreement-caption").textContent =
      `How alike the methods rank the ${job.result.segments.count} superpixels for ${first.label}: ` +
      "Spearman above the diagonal, the shared top superpixels below.";
  }

  return { methods, offer, show };
})();
