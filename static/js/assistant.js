// The assistant: post a message, then poll the reply while the Celery worker streams it (partial text in Redis).
(function () {
  const csrf = () => (document.cookie.match(/csrftoken=([^;]+)/) || [])[1] || "";
  function bubble(box, role, text, id) {
    const el = document.createElement("div");
    el.className = "msg " + role;
    if (id) el.dataset.message = id;
    el.textContent = text;
    box.appendChild(el);
    box.scrollTop = box.scrollHeight;
    return el;
  }
  function meta(m) {
    const d = document.createElement("div");
    d.className = "meta";
    d.textContent = m.model + " · " + window.num(m.input_tokens) + " in / " + window.num(m.output_tokens) + " out · " + window.usd(m.cost_usd);
    return d;
  }
  // A failed reply: what failed, what to do about it, and a link to where it is done (same as _reply_error.html).
  function showError(el, m) {
    el.textContent = "";
    const add = function (tag, cls, text) {
      const part = document.createElement(tag);
      part.className = cls;
      part.textContent = text;
      el.appendChild(part);
      return part;
    };
    add("span", "msg-error", m.error);
    if (m.error_hint) add("span", "msg-hint", m.error_hint);
    if (m.error_help) add("a", "msg-help", m.error_help.text).href = m.error_help.url;
    el.classList.add("error");
    el.dataset.status = "error";
  }
  // Send waits while a reply is on its way: one question at a time, as the reply is the next turn's context.
  let waiting = 0;
  function busy(delta) {
    waiting = Math.max(0, waiting + delta);
    const send = document.getElementById("send");
    if (!send) return;
    send.disabled = waiting > 0;
    send.textContent = waiting > 0 ? "Replying…" : "Send";
  }
  function poll(thread, el, id) {
    fetch("/api/llm/threads/" + thread + "/messages/" + id, { credentials: "same-origin" }).then(r => r.json()).then(m => {
      if (m.status === "done") { el.textContent = m.content; el.appendChild(meta(m)); el.dataset.status = "done"; busy(-1); return; }
      if (m.status === "error") { showError(el, m); busy(-1); return; }
      el.textContent = m.content || "…";
      el.dataset.status = m.status;
      setTimeout(() => poll(thread, el, id), 300);
    }).catch(() => { setTimeout(() => poll(thread, el, id), 2000); });
  }
  document.addEventListener("DOMContentLoaded", function () {
    const box = document.getElementById("messages");
    const form = document.getElementById("composer");
    if (!box || !form) return;
    const thread = box.dataset.thread;
    box.scrollTop = box.scrollHeight;
    box.querySelectorAll("[data-status=pending],[data-status=streaming]").forEach(el => { busy(1); poll(thread, el, el.dataset.message); });
    const textarea = document.getElementById("content");
    textarea.addEventListener("keydown", e => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); } });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const content = textarea.value.trim();
      const errors = document.getElementById("composer-error");
      errors.innerHTML = "";
      if (!content || waiting > 0) return;
      busy(1);
      fetch("/api/llm/threads/" + thread + "/messages", { method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() }, body: JSON.stringify({ content }) })
        .then(r => r.json().then(b => ({ status: r.status, body: b }))).then(({ status, body }) => {
          if (status !== 202) {
            busy(-1);
            errors.textContent = "";
            const item = document.createElement("li");
            item.textContent = Object.values(body).flat().join(" ");
            errors.appendChild(item);
            return;
          }
          const empty = document.getElementById("empty-thread"); if (empty) empty.remove();
          textarea.value = "";
          bubble(box, "user", body.message.content, body.message.id);
          const reply = bubble(box, "assistant", body.reply.content || "…", body.reply.id);
          poll(thread, reply, body.reply.id);
        });
    });
  });
})();
