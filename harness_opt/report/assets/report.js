// The report page's behaviour: tabs, the lineage tree, the diff picker and the trace viewer.
// All data is embedded in #report-data; nothing is fetched, so the page works from file://.
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("report-data").textContent);
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  };
  const label = (h) => (D.versions[h] ? D.versions[h].label : h.slice(0, 12));
  const rowOf = {};
  D.leaderboard.rows.forEach((r) => { if (!(r.hash in rowOf)) rowOf[r.hash] = r; });
  const incumbent = D.leaderboard.incumbent ? D.leaderboard.incumbent.hash : null;

  // ---- tabs
  function show(tab) {
    document.querySelectorAll(".tab").forEach((s) => s.classList.toggle("active", s.id === tab));
    document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.tab === tab));
  }
  document.querySelectorAll("nav a").forEach((a) =>
    a.addEventListener("click", (ev) => { ev.preventDefault(); show(a.dataset.tab); history.replaceState(null, "", "#" + a.dataset.tab); }));

  // ---- lineage tree
  function node(n) {
    const li = el("li");
    const box = el("div", "node" + (n.hash === incumbent ? " incumbent" : ""));
    box.appendChild(el("b", "", label(n.hash)));
    const r = rowOf[n.hash];
    if (r) box.appendChild(el("span", "score", r.score.toFixed(3)));
    if (n.hash === incumbent) { const b = el("span", "badge inc", "incumbent"); box.appendChild(b); }
    const v = D.versions[n.hash] || {};
    if (v.proposer) box.appendChild(el("span", "tag", v.proposer));
    if (v.hypothesis) box.appendChild(el("span", "hyp", v.hypothesis));
    li.appendChild(box);
    if (n.children.length) {
      const ul = el("ul");
      n.children.forEach((c) => ul.appendChild(node(c)));
      li.appendChild(ul);
    }
    return li;
  }
  const tree = el("div", "tree");
  const top = el("ul");
  D.tree.forEach((n) => top.appendChild(node(n)));
  tree.appendChild(top);
  $("tree").appendChild(tree);

  // ---- diff picker
  const selA = $("diff-a"), selB = $("diff-b");
  D.order.forEach((h) => { selA.appendChild(new Option(label(h), h)); selB.appendChild(new Option(label(h), h)); });
  if (D.order.length > 1) {
    const best = incumbent && D.order.includes(incumbent) ? incumbent : D.order[D.order.length - 1];
    const parentOrFirst = D.order.find((h) => h !== best) || D.order[0];
    selA.value = parentOrFirst; selB.value = best;
  }
  if (!D.all_pairs) $("diff-note").textContent = "many versions: diffs embedded for each version against its parent and the incumbent";
  function showDiff() {
    const a = selA.value, b = selB.value, body = $("diff-body");
    if (a === b) { body.innerHTML = "<p class='muted'>Pick two different versions.</p>"; return; }
    const fwd = D.diffs[a + "|" + b], rev = D.diffs[b + "|" + a];
    if (fwd) body.innerHTML = fwd;
    else if (rev) {  // labels come from harness.toml, which a proposer may write: text, never markup
      body.innerHTML = rev;
      body.prepend(el("p", "muted", "Shown as " + label(b) + " → " + label(a) + " (the older version first)."));
    }
    else body.innerHTML = "<p class='warn'>This pair is not embedded in the report; run <code>harness-opt diff</code>.</p>";
    body.querySelectorAll("a.trace-link").forEach((a) =>
      a.addEventListener("click", (ev) => { ev.preventDefault(); openTrace(a.dataset.ref); }));
  }
  $("diff-go").addEventListener("click", showDiff);

  // ---- traces
  const selV = $("trace-version");
  D.order.forEach((h) => selV.appendChild(new Option(label(h), h)));
  if (incumbent && D.order.includes(incumbent)) selV.value = incumbent;
  function listTraces() {
    const list = $("trace-list");
    list.textContent = "";
    const failedOnly = $("trace-failed").checked;
    (D.rollouts[selV.value] || []).forEach((r) => {
      if (failedOnly && r.passed) return;
      const item = el("div", "item");
      item.dataset.ref = r.trace_ref || "";
      item.appendChild(el("span", "", r.task_id + (r.trial ? " · trial " + r.trial : "")));
      const right = el("span");
      right.appendChild(el("span", "badge " + (r.passed ? "pass" : "fail"), (r.passed ? "pass " : "fail ") + Number(r.score).toFixed(2)));
      item.appendChild(right);
      item.addEventListener("click", () => openTrace(r.trace_ref));
      list.appendChild(item);
    });
  }
  selV.addEventListener("change", listTraces);
  $("trace-failed").addEventListener("change", listTraces);

  function content(m) {
    let c = m.content;
    if (Array.isArray(c)) c = c.map((p) => (p && p.text) || JSON.stringify(p)).join(" ");
    let text = c == null ? "" : String(c);
    (m.tool_calls || []).forEach((tc) => {
      const fn = tc.function || {};
      text += "\n→ " + fn.name + "(" + (typeof fn.arguments === "string" ? fn.arguments : JSON.stringify(fn.arguments)) + ")";
    });
    return text;
  }
  function msg(role, text, extra) {
    const box = el("div", "msg " + role + (extra ? " " + extra : ""));
    box.appendChild(el("div", "role", role));
    box.appendChild(el("pre", "", text));
    return box;
  }
  function openTrace(ref) {
    show("traces");
    const view = $("trace-view");
    view.textContent = "";
    document.querySelectorAll("#trace-list .item").forEach((i) => i.classList.toggle("sel", i.dataset.ref === ref));
    const t = D.traces[ref];
    if (t && t.key.version_hash in D.rollouts && selV.value !== t.key.version_hash) {
      selV.value = t.key.version_hash;
      listTraces();
    }
    document.querySelectorAll("#trace-list .item").forEach((i) => i.classList.toggle("sel", i.dataset.ref === ref));
    if (!t) { view.appendChild(el("p", "warn", "Trace " + ref + " is not in this report (trace file missing or over the per-version cap).")); return; }
    const head = el("div", "trace-head");
    const title = el("h3", "", t.key.task_id + " · trial " + t.key.trial + " ");
    title.appendChild(el("span", "badge " + (t.passed ? "pass" : "fail"), (t.passed ? "PASS " : "FAIL ") + Number(t.score).toFixed(3)));
    head.appendChild(title);
    head.appendChild(el("div", "meta", "run " + t.run_id + " · " + t.key.suite + "/" + t.key.split + " · model " + t.key.model + " · " + ref));
    if (t.feedback) head.appendChild(el("div", "meta", "feedback: " + t.feedback));
    if (t.error) head.appendChild(msg("error", t.error + ": " + (t.error_detail || "")));
    view.appendChild(head);
    let seen = 0, totalIn = 0, totalOut = 0, totalCost = 0;
    t.events.forEach((e, i) => {
      const call = el("div", "call");
      if (e.type === "llm") {
        totalIn += e.tokens_in; totalOut += e.tokens_out; totalCost += e.cost_usd;
        const meta = el("div", "meta");
        meta.innerHTML = "<b>LLM call #" + (i + 1) + "</b> · ";
        meta.appendChild(document.createTextNode(e.model + " · in " + e.tokens_in + " / out " + e.tokens_out +
          " tokens · $" + Number(e.cost_usd).toFixed(5) + " · " + Number(e.latency_s).toFixed(2) + "s" + (e.cached ? " · cached" : "")));
        call.appendChild(meta);
        const fresh = e.messages.length >= seen ? e.messages.slice(seen) : e.messages;
        seen = e.messages.length + 1;
        fresh.forEach((m) => call.appendChild(msg(m.role || "user", content(m))));
        if (e.response) call.appendChild(msg("assistant", content(e.response)));
        if (e.error) call.appendChild(msg("error", e.error));
      } else if (e.type === "tool") {
        const meta = el("div", "meta");
        meta.innerHTML = "<b>tool call #" + (i + 1) + "</b> · ";
        meta.appendChild(document.createTextNode(e.name + " · " + Number(e.latency_s).toFixed(3) + "s"));
        call.appendChild(meta);
        call.appendChild(msg("tool", "args: " + JSON.stringify(e.args, null, 1) + "\n" +
          (e.error ? "error: " + e.error : "result: " + JSON.stringify(e.result, null, 1)), e.error ? "error" : ""));
      } else if (e.type === "output") {
        call.appendChild(msg("output", JSON.stringify(e.output, null, 1)));
      } else if (e.type === "error") {
        call.appendChild(msg("error", e.kind + ": " + e.reason));
      } else if (e.type === "log") {
        call.appendChild(el("div", "meta", "log: " + e.message + (e.data && Object.keys(e.data).length ? " " + JSON.stringify(e.data) : "")));
      }
      view.appendChild(call);
    });
    head.appendChild(el("div", "meta", "totals: in " + totalIn + " / out " + totalOut + " tokens · $" + totalCost.toFixed(5)));
  }
  window.harnessReport = { show, openTrace, showDiff };

  listTraces();
  showDiff();
  const initial = (location.hash || "#leaderboard").slice(1);
  show(["leaderboard", "lineage", "progress", "diff", "traces"].includes(initial) ? initial : "leaderboard");
})();
