// The table of every target: the rows are the JSON above, shown a page at a time (a
// 100,000-row DOM would be slow) and filtered by text and outcome. Cells are set with
// textContent only: the data holds text from phones.
(function () {
  "use strict";
  // In input order (a campaign writes them as targets end).
  var rows = JSON.parse(document.getElementById("rows").textContent)
    .sort(function (a, b) { return a[0] - b[0]; });
  var PAGE = 100;
  var COLORS = {};
  document.querySelectorAll("#counts li[data-outcome]").forEach(function (li) {
    COLORS[li.dataset.outcome] = li.querySelector(".swatch").style.background;
  });
  var q = document.getElementById("q");
  var outcome = document.getElementById("outcome");
  var shown = document.getElementById("shown");
  var tbody = document.querySelector("#table tbody");
  var matching = rows;
  var page = 0;

  Object.keys(COLORS).forEach(function (label) {
    var option = document.createElement("option");
    option.value = label;
    option.textContent = label;
    outcome.appendChild(option);
  });

  // A row matches when its outcome is the one chosen and every word of the text is in one
  // of its cells.
  function filter() {
    var words = q.value.toLowerCase().split(/\s+/).filter(Boolean);
    var wanted = outcome.value;
    matching = rows.filter(function (r) {
      if (wanted && r[4] !== wanted) return false;
      if (!words.length) return true;
      var text = r.join("\u0001").toLowerCase();
      return words.every(function (w) { return text.indexOf(w) >= 0; });
    });
    page = 0;
    render();
  }

  function cell(tr, value, numeric) {
    var td = document.createElement("td");
    td.textContent = value === null || value === undefined ? "" : String(value);
    if (numeric) td.className = "num";
    tr.appendChild(td);
    return td;
  }

  function render() {
    var pages = Math.max(1, Math.ceil(matching.length / PAGE));
    page = Math.min(Math.max(page, 0), pages - 1);
    var first = page * PAGE;
    var slice = matching.slice(first, first + PAGE);
    var body = document.createDocumentFragment();
    slice.forEach(function (r) {
      var tr = document.createElement("tr");
      cell(tr, r[0], true);
      cell(tr, r[1]);
      cell(tr, r[2]);
      cell(tr, r[3]);
      var o = cell(tr, r[4]);
      o.className = "outcome";
      o.style.color = COLORS[r[4]] || "";
      cell(tr, r[5], true);
      cell(tr, r[6]);
      cell(tr, r[7], true);
      cell(tr, r[8], true);
      cell(tr, r[9], true);
      body.appendChild(tr);
    });
    tbody.replaceChildren(body);
    shown.dataset.matching = String(matching.length);
    shown.dataset.rows = String(slice.length);
    shown.textContent = matching.length
      ? "rows " + (first + 1) + "-" + (first + slice.length) + " of " + matching.length +
        (matching.length < rows.length ? " (of " + rows.length + ")" : "") +
        ", page " + (page + 1) + " of " + pages
      : "no row matches (of " + rows.length + ")";
    document.getElementById("prev").disabled = page === 0;
    document.getElementById("next").disabled = page >= pages - 1;
  }

  var timer = null;
  q.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(filter, 150);
  });
  outcome.addEventListener("change", filter);
  document.getElementById("prev").addEventListener("click", function () { page--; render(); });
  document.getElementById("next").addEventListener("click", function () { page++; render(); });
  // A bar segment or a legend entry shows its outcome's rows.
  document.querySelectorAll("[data-filter]").forEach(function (el) {
    el.addEventListener("click", function () {
      outcome.value = outcome.value === el.dataset.filter ? "" : el.dataset.filter;
      filter();
      document.getElementById("targets").scrollIntoView();
    });
  });
  filter();
  document.body.dataset.rows = String(rows.length);
  document.body.dataset.ready = "yes";
})();
