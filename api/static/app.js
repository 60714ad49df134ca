/* Knowledge-base web page: collections, documents, uploads and a streamed chat.
 *
 * Plain browser JavaScript, no build step. Untrusted text (answers, snippets,
 * file names, error messages) only ever goes into the page through
 * textContent / DOM nodes, never through innerHTML.
 */
"use strict";

(() => {
  const t = window.t;
  const $ = (id) => document.getElementById(id);
  const KEY_STORAGE = "rag_api_key";
  const COLLECTION_STORAGE = "rag_collection";
  const DEFAULT_COLLECTION = "default";
  const JOB_POLL_MS = 600;
  const DOC_POLL_MS = 1500;

  const state = {
    collections: [],
    collection: null,
    documents: [],
    scopeDoc: null, // {id, filename} when questions are restricted to one document
    sessionId: null,
    busy: false,
    apiKey: safeStorageGet(KEY_STORAGE) || "",
    docPollTimer: null,
  };

  // ---------------------------------------------------------------- helpers

  function safeStorageGet(key) {
    try {
      return window.localStorage.getItem(key);
    } catch (_e) {
      return null;
    }
  }

  function safeStorageSet(key, value) {
    try {
      if (value === null || value === undefined || value === "") window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, value);
    } catch (_e) {
      /* private mode: keep it in memory only */
    }
  }

  /* el("li", {class: "x", dataset: {id: 1}, onclick: fn}, "text", childNode) */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [name, value] of Object.entries(attrs)) {
        if (value === null || value === undefined || value === false) continue;
        if (name === "class") node.className = value;
        else if (name === "text") node.textContent = value;
        else if (name === "dataset") Object.assign(node.dataset, value);
        else if (name.startsWith("on") && typeof value === "function") {
          node.addEventListener(name.slice(2), value);
        } else if (value === true) node.setAttribute(name, "");
        else node.setAttribute(name, String(value));
      }
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  let toastTimer = null;
  function toast(message, isError) {
    const box = $("toast");
    box.textContent = message;
    box.classList.toggle("error", Boolean(isError));
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => {
      box.hidden = true;
    }, isError ? 7000 : 3500);
  }

  function applyStaticTranslations() {
    document.documentElement.lang = window.LANG === "zh" ? "zh-CN" : "en";
    document.title = t("appTitle");
    for (const node of document.querySelectorAll("[data-i18n]")) {
      node.textContent = t(node.dataset.i18n);
    }
    for (const node of document.querySelectorAll("[data-i18n-placeholder]")) {
      node.setAttribute("placeholder", t(node.dataset.i18nPlaceholder));
    }
    for (const node of document.querySelectorAll("[data-i18n-title]")) {
      node.setAttribute("title", t(node.dataset.i18nTitle));
    }
    for (const node of document.querySelectorAll("[data-i18n-aria]")) {
      node.setAttribute("aria-label", t(node.dataset.i18nAria));
    }
  }

  // -------------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, code, message, details) {
      super(message || code || `HTTP ${status}`);
      this.status = status;
      this.code = code || "";
      this.details = details;
    }
  }

  function authHeaders(extra) {
    const headers = new Headers(extra || {});
    if (state.apiKey) headers.set("Authorization", `Bearer ${state.apiKey}`);
    return headers;
  }

  async function errorFromResponse(res) {
    let body = null;
    try {
      body = await res.json();
    } catch (_e) {
      body = null;
    }
    const err = body && body.error ? body.error : {};
    const message = err.message || (body && body.detail ? String(body.detail) : res.statusText);
    return new ApiError(res.status, err.code, message, err.details);
  }

  function needKey() {
    const panel = $("key-panel");
    if (panel.hidden) {
      panel.hidden = false;
      $("api-key").focus();
    }
  }

  async function rawFetch(path, options) {
    const opts = Object.assign({}, options || {});
    opts.headers = authHeaders(opts.headers);
    let res;
    try {
      res = await fetch(path, opts);
    } catch (e) {
      throw new ApiError(0, "network", t("networkError", { message: e.message }));
    }
    if (res.status === 401) {
      needKey();
      throw await errorFromResponse(res);
    }
    if (!res.ok) throw await errorFromResponse(res);
    return res;
  }

  async function api(path, options) {
    const res = await rawFetch(path, options);
    if (res.status === 204) return null;
    const type = res.headers.get("content-type") || "";
    return type.includes("json") ? res.json() : null;
  }

  function jsonBody(method, payload) {
    return {
      method,
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(payload),
    };
  }

  function reportError(err) {
    const msg = err && err.message ? err.message : String(err);
    toast(`${t("error")}: ${msg}`, true);
  }

  // ------------------------------------------------------------ collections

  async function loadCollections(prefer) {
    let data;
    try {
      data = await api("/collections");
    } catch (err) {
      reportError(err);
      return;
    }
    // Only the collections this API key may use; its default is the server's word too.
    state.collections = (data && data.collections) || [];
    const fallback = (data && data.default_collection) || DEFAULT_COLLECTION;
    const names = state.collections.map((c) => c.name);
    if (!names.length) names.push(fallback);
    const wanted = prefer || state.collection || safeStorageGet(COLLECTION_STORAGE);
    const chosen = names.includes(wanted) ? wanted : names.includes(fallback) ? fallback : names[0];
    const select = $("collection-select");
    clear(select);
    for (const name of names) {
      const info = state.collections.find((c) => c.name === name);
      const label = info ? `${name} (${info.documents})` : name;
      select.append(el("option", { value: name, text: label }));
    }
    select.value = chosen;
    if (chosen !== state.collection) {
      state.collection = chosen;
      safeStorageSet(COLLECTION_STORAGE, chosen);
      setScope(null);
    }
    await loadDocuments();
  }

  async function createCollection(name) {
    try {
      await api("/collections", jsonBody("POST", { name }));
    } catch (err) {
      reportError(err);
      return;
    }
    toast(t("collectionCreated", { name }));
    await loadCollections(name);
  }

  async function deleteCollection() {
    const name = state.collection;
    if (!name || !window.confirm(t("confirmDeleteCollection", { name }))) return;
    try {
      await api(`/collections/${encodeURIComponent(name)}`, { method: "DELETE" });
    } catch (err) {
      reportError(err);
      return;
    }
    toast(t("deleted", { name }));
    state.collection = null;
    safeStorageSet(COLLECTION_STORAGE, null);
    await loadCollections();
  }

  // -------------------------------------------------------------- documents

  async function loadDocuments() {
    if (!state.collection) return;
    if (!state.collections.some((c) => c.name === state.collection)) {
      // The default collection only exists once something is uploaded to it.
      state.documents = [];
      renderDocuments();
      return;
    }
    const params = new URLSearchParams({ collection: state.collection, limit: "500" });
    let data;
    try {
      data = await api(`/documents?${params}`);
    } catch (err) {
      if (err.status === 404) {
        state.documents = [];
        renderDocuments();
        return;
      }
      reportError(err);
      return;
    }
    state.documents = (data && data.documents) || [];
    if (state.scopeDoc && !state.documents.some((d) => d.id === state.scopeDoc.id)) setScope(null);
    renderDocuments();
    scheduleDocPoll();
  }

  function scheduleDocPoll() {
    clearTimeout(state.docPollTimer);
    const busy = state.documents.some((d) => d.status === "pending" || d.status === "processing");
    if (busy) state.docPollTimer = setTimeout(loadDocuments, DOC_POLL_MS);
  }

  function statusBadge(status) {
    return el("span", { class: `status status-${status}`, text: t(`status_${status}`) });
  }

  function renderDocuments() {
    const list = $("doc-list");
    clear(list);
    $("doc-empty").hidden = state.documents.length > 0;
    for (const doc of state.documents) {
      const selected = state.scopeDoc && state.scopeDoc.id === doc.id;
      const name = doc.filename || doc.id;
      const meta = [];
      if (doc.status === "ready") meta.push(t("docMeta", { pages: doc.pages ?? "?", chunks: doc.chunks ?? "?" }));
      const item = el(
        "li",
        {
          class: `doc-item${selected ? " selected" : ""}`,
          dataset: { docId: doc.id, status: doc.status || "" },
        },
        el(
          "button",
          {
            type: "button",
            class: "doc-main",
            "aria-pressed": selected ? "true" : "false",
            title: t("restrictTo"),
            onclick: () => setScope(selected ? null : { id: doc.id, filename: name }),
          },
          el("span", { class: "doc-icon", "aria-hidden": "true", text: fileIcon(name) }),
          el(
            "span",
            { class: "doc-text" },
            el("span", { class: "doc-name", text: name, title: name }),
            el(
              "span",
              { class: "doc-meta" },
              statusBadge(doc.status || "pending"),
              meta.length ? el("span", { text: meta.join(" ") }) : null,
            ),
            doc.status === "failed" && doc.error ? el("span", { class: "doc-error", text: doc.error }) : null,
          ),
        ),
        el(
          "span",
          { class: "doc-actions" },
          doc.status === "ready"
            ? el("a", {
                class: "icon-btn",
                href: `/documents/${encodeURIComponent(doc.id)}/file`,
                target: "_blank",
                rel: "noopener",
                title: t("download"),
                "aria-label": `${t("download")}: ${name}`,
                text: "\u2197",
                onclick: (ev) => openFile(ev, doc.id, null),
              })
            : null,
          el("button", {
            type: "button",
            class: "icon-btn danger doc-delete",
            title: t("deleteDoc", { name }),
            "aria-label": t("deleteDoc", { name }),
            text: "\u2715",
            onclick: () => deleteDocument(doc.id, name),
          }),
        ),
      );
      list.append(item);
    }
  }

  function fileIcon(name) {
    const lower = name.toLowerCase();
    if (lower.endsWith(".pdf")) return "PDF";
    if (lower.endsWith(".html") || lower.endsWith(".htm")) return "HTML";
    if (lower.endsWith(".md") || lower.endsWith(".markdown")) return "MD";
    return "TXT";
  }

  async function deleteDocument(id, name) {
    if (!window.confirm(t("confirmDeleteDoc", { name }))) return;
    try {
      await api(`/documents/${encodeURIComponent(id)}`, { method: "DELETE" });
    } catch (err) {
      reportError(err);
      return;
    }
    toast(t("deleted", { name }));
    if (state.scopeDoc && state.scopeDoc.id === id) setScope(null);
    await loadCollections();
  }

  function setScope(doc) {
    state.scopeDoc = doc;
    const bar = $("scope-bar");
    const pill = $("chat-scope");
    if (doc) {
      bar.hidden = false;
      $("scope-text").textContent = t("scopeOnly", { name: doc.filename });
      pill.textContent = t("scopeDoc", { name: doc.filename });
      pill.classList.add("active");
    } else {
      bar.hidden = true;
      $("scope-text").textContent = "";
      pill.textContent = t("scopeAll");
      pill.classList.remove("active");
    }
    for (const item of document.querySelectorAll(".doc-item")) {
      const on = Boolean(doc) && item.dataset.docId === doc.id;
      item.classList.toggle("selected", on);
      const btn = item.querySelector(".doc-main");
      if (btn) btn.setAttribute("aria-pressed", on ? "true" : "false");
    }
  }

  /* Files need the API key too when one is set: fetch them and open a blob URL. */
  async function openFile(ev, docId, page) {
    if (!state.apiKey) return; // the plain link works
    ev.preventDefault();
    const win = window.open("", "_blank");
    try {
      const res = await rawFetch(`/documents/${encodeURIComponent(docId)}/file`);
      const url = URL.createObjectURL(await res.blob());
      const target = page ? `${url}#page=${page}` : url;
      if (win) win.location.href = target;
      else window.location.href = target;
    } catch (err) {
      if (win) win.close();
      reportError(err);
    }
  }

  // ---------------------------------------------------------------- uploads

  function uploadItem(filename) {
    const bar = el("progress", { max: "100", "aria-label": filename });
    bar.removeAttribute("value"); // indeterminate until chunk counts arrive
    const status = el("span", { class: "status status-uploading", text: t("status_uploading") });
    const detail = el("span", { class: "upload-detail" });
    const item = el(
      "li",
      { class: "upload-item", dataset: { filename } },
      el("div", { class: "upload-row" }, el("span", { class: "upload-name", text: filename }), status),
      bar,
      detail,
    );
    $("upload-list").append(item);
    return { item, bar, status, detail };
  }

  function setUploadStatus(ui, status, detailText) {
    ui.status.className = `status status-${status}`;
    ui.status.textContent = t(`status_${status}`);
    ui.item.dataset.status = status;
    if (detailText !== undefined) ui.detail.textContent = detailText;
  }

  async function uploadFiles(fileList) {
    const files = Array.from(fileList || []);
    if (!files.length) return;
    const uis = files.map((f) => uploadItem(f.name));
    const form = new FormData();
    for (const file of files) form.append("files", file, file.name);
    if (state.collection) form.append("collection", state.collection);
    const password = $("pdf-password").value;
    if (password) form.append("password", password);
    let data;
    try {
      data = await api("/documents", { method: "POST", body: form });
    } catch (err) {
      for (const ui of uis) {
        setUploadStatus(ui, "failed", err.message);
        ui.bar.value = 0;
      }
      reportError(err);
      return;
    }
    const jobs = (data && data.jobs) || [];
    const unmatched = uis.slice();
    for (const job of jobs) {
      let idx = unmatched.findIndex((ui) => ui.item.dataset.filename === job.filename);
      if (idx < 0) idx = 0;
      const ui = unmatched.splice(idx, 1)[0] || uploadItem(job.filename || "?");
      ui.item.dataset.jobId = job.job_id;
      setUploadStatus(ui, job.status === "failed" ? "failed" : "queued");
      pollJob(job.job_id, ui);
    }
    for (const ui of unmatched) ui.item.remove();
    await loadCollections();
  }

  async function pollJob(jobId, ui) {
    let job;
    try {
      job = await api(`/jobs/${encodeURIComponent(jobId)}`);
    } catch (err) {
      setUploadStatus(ui, "failed", err.message);
      return;
    }
    const total = Number(job.chunks_total) || 0;
    const done = Number(job.chunks_embedded) || 0;
    let detail = "";
    if (total > 0) {
      ui.bar.value = Math.round((100 * Math.min(done, total)) / total);
      detail = t("uploadProgress", { done, total });
    } else if (job.pages_parsed) {
      detail = t("pagesParsed", { pages: job.pages_parsed });
    }
    if (job.status === "succeeded") {
      ui.bar.value = 100;
      setUploadStatus(ui, "succeeded", detail);
      await loadCollections();
      setTimeout(() => ui.item.remove(), 5000);
      return;
    }
    if (job.status === "failed") {
      ui.bar.value = 0;
      ui.item.classList.add("failed");
      setUploadStatus(ui, "failed", job.error || job.error_code || t("status_failed"));
      await loadCollections();
      return;
    }
    setUploadStatus(ui, job.status === "running" ? "running" : "queued", detail);
    setTimeout(() => pollJob(jobId, ui), JOB_POLL_MS);
  }

  // ------------------------------------------------------------------- chat

  function hideWelcome() {
    const welcome = $("welcome");
    if (welcome) welcome.hidden = true;
  }

  function scrollToBottom() {
    const box = $("messages");
    box.scrollTop = box.scrollHeight;
  }

  function addUserMessage(text) {
    hideWelcome();
    const msg = el(
      "article",
      { class: "msg user", "aria-label": t("you") },
      el("div", { class: "msg-role", text: t("you") }),
      el("div", { class: "msg-body", text }),
    );
    $("messages").append(msg);
    scrollToBottom();
  }

  function addAssistantMessage() {
    hideWelcome();
    const body = el("div", { class: "msg-body streaming" }, el("span", { class: "typing", text: t("thinking") }));
    const notice = el("div", { class: "msg-notice", hidden: true });
    const badges = el("div", { class: "badges" });
    const sources = el("div", { class: "sources", hidden: true });
    const msg = el(
      "article",
      { class: "msg assistant", "aria-label": t("assistant"), "aria-busy": "true" },
      el("div", { class: "msg-role", text: t("assistant") }),
      notice,
      body,
      badges,
      sources,
    );
    $("messages").append(msg);
    scrollToBottom();
    return { msg, body, notice, badges, sources, text: "" };
  }

  const CITE_RE = /\[(\d+(?:\s*[,;]\s*\d+)*)\]/g;

  /* Text with [n] markers -> text nodes and citation chips (no HTML parsing). */
  function renderAnswerText(container, text, citations) {
    clear(container);
    const byNumber = new Map((citations || []).map((c) => [Number(c.number), c]));
    let last = 0;
    for (const match of text.matchAll(CITE_RE)) {
      if (match.index > last) container.append(document.createTextNode(text.slice(last, match.index)));
      const numbers = match[1].split(/[,;]/).map((s) => Number(s.trim()));
      for (const n of numbers) container.append(citationChip(n, byNumber.get(n)));
      last = match.index + match[0].length;
    }
    if (last < text.length) container.append(document.createTextNode(text.slice(last)));
  }

  function citationChip(n, cite) {
    if (!cite) return el("span", { class: "cite-chip pending", text: String(n) });
    const page = cite.page ?? null;
    const label = `${t("citation", { n })}: ${cite.filename || ""}${page ? `, ${t("page", { page })}` : ""}`;
    return el("button", {
      type: "button",
      class: "cite-chip",
      text: String(n),
      title: label,
      "aria-label": label,
      dataset: {
        n: String(n),
        page: page === null ? "" : String(page),
        docId: cite.document_id || "",
        chunkId: cite.chunk_id || "",
      },
      onclick: (ev) => openCitation(cite, ev.currentTarget),
    });
  }

  function renderSources(container, citations) {
    clear(container);
    if (!citations || !citations.length) {
      container.hidden = true;
      return;
    }
    container.hidden = false;
    container.append(el("div", { class: "sources-title", text: t("sources") }));
    const list = el("ol", { class: "source-list" });
    for (const cite of citations) {
      const page = cite.page ? t("page", { page: cite.page }) : t("pageUnknown");
      list.append(
        el(
          "li",
          { dataset: { n: String(cite.number), page: cite.page ?? "", docId: cite.document_id || "" } },
          el(
            "button",
            { type: "button", class: "source-btn", onclick: (ev) => openCitation(cite, ev.currentTarget) },
            el("span", { class: "source-num", text: `[${cite.number}]` }),
            el("span", { class: "source-name", text: cite.filename || cite.document_id || "?" }),
            el("span", { class: "source-page", text: page }),
          ),
        ),
      );
    }
    container.append(list);
  }

  function renderFlags(ui, flags) {
    clear(ui.badges);
    const f = flags || {};
    if (f.not_found || f.refused) {
      ui.msg.classList.add("no-answer");
      ui.notice.hidden = false;
      ui.notice.textContent = t(f.not_found ? "notFound" : "refused");
    }
    const badge = (key, cls) =>
      ui.badges.append(el("span", { class: `badge ${cls}`, title: t(`${key}Title`), text: t(key) }));
    if (f.fallback_used) badge("badgeFallback", "badge-fallback");
    if (f.redacted) badge("badgeRedacted", "badge-redacted");
    if (f.injection_detected) badge("badgeInjection", "badge-injection");
    if (f.truncated) badge("badgeTruncated", "badge-truncated");
  }

  function finishAnswer(ui, data) {
    const ans = data && typeof data.answer === "object" && data.answer !== null ? data.answer : data || {};
    const sessionId = (data && data.session_id) || ans.session_id;
    if (sessionId) state.sessionId = sessionId;
    const text = typeof ans.answer === "string" ? ans.answer : ui.text;
    ui.text = text;
    ui.body.classList.remove("streaming");
    renderAnswerText(ui.body, text, ans.citations);
    renderSources(ui.sources, ans.citations);
    renderFlags(ui, ans.flags);
    ui.msg.setAttribute("aria-busy", "false");
    ui.msg.classList.add("done");
    scrollToBottom();
  }

  function failAnswer(ui, message) {
    ui.body.classList.remove("streaming");
    ui.msg.classList.add("error");
    ui.msg.setAttribute("aria-busy", "false");
    if (ui.text) renderAnswerText(ui.body, ui.text, []);
    else clear(ui.body);
    ui.notice.hidden = false;
    ui.notice.textContent = `${t("error")}: ${message}`;
    scrollToBottom();
  }

  /* Read a text/event-stream body and call onEvent(name, data) per event. */
  async function readSse(res, onEvent) {
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    const dispatch = (block) => {
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") name = value;
        else if (field === "data") data.push(value);
      }
      if (!data.length) return;
      let parsed;
      try {
        parsed = JSON.parse(data.join("\n"));
      } catch (_e) {
        parsed = data.join("\n");
      }
      onEvent(name, parsed);
    };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        dispatch(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
      }
    }
    buffer += decoder.decode();
    if (buffer.trim()) dispatch(buffer);
  }

  async function sendMessage(text) {
    if (state.busy) return;
    state.busy = true;
    $("send-btn").disabled = true;
    addUserMessage(text);
    const ui = addAssistantMessage();
    const payload = { message: text, stream: true };
    if (state.sessionId) payload.session_id = state.sessionId;
    if (state.collection) payload.collections = [state.collection];
    if (state.scopeDoc) payload.document_ids = [state.scopeDoc.id];
    let finished = false;
    try {
      const res = await rawFetch("/chat", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
        body: JSON.stringify(payload),
      });
      const type = res.headers.get("content-type") || "";
      if (!type.includes("event-stream")) {
        finishAnswer(ui, await res.json());
        finished = true;
      } else {
        await readSse(res, (name, data) => {
          if (name === "token") {
            const piece = data && typeof data === "object" ? data.text || "" : String(data);
            ui.text += piece;
            ui.msg.dataset.tokens = String(Number(ui.msg.dataset.tokens || 0) + 1);
            renderAnswerText(ui.body, ui.text, []);
            scrollToBottom();
          } else if (name === "answer") {
            finishAnswer(ui, data);
            finished = true;
          } else if (name === "error") {
            const err = (data && data.error) || {};
            failAnswer(ui, err.message || err.code || t("error"));
            finished = true;
          }
        });
        if (!finished) failAnswer(ui, t("streamEnded"));
      }
    } catch (err) {
      failAnswer(ui, err.message || String(err));
    } finally {
      state.busy = false;
      $("send-btn").disabled = false;
    }
  }

  async function newChat() {
    const old = state.sessionId;
    state.sessionId = null;
    for (const node of Array.from($("messages").children)) {
      if (node.id !== "welcome") node.remove();
    }
    $("welcome").hidden = false;
    closeCitation();
    if (old) {
      try {
        await api(`/chat/${encodeURIComponent(old)}`, { method: "DELETE" });
      } catch (_e) {
        /* the session may already be gone */
      }
    }
    $("chat-input").focus();
  }

  // ------------------------------------------------------- citation popover

  let citationOpener = null;

  function openCitation(cite, opener) {
    citationOpener = opener || null;
    const box = $("citation-box");
    $("citation-title").textContent = `[${cite.number}] ${cite.filename || cite.document_id || ""}`;
    const meta = [cite.page ? t("page", { page: cite.page }) : t("pageUnknown")];
    if (typeof cite.score === "number") meta.push(t("score", { score: cite.score.toFixed(3) }));
    $("citation-meta").textContent = meta.join(" · ");
    $("citation-snippet").textContent = cite.snippet || "";
    const link = $("citation-link");
    const href = `/documents/${encodeURIComponent(cite.document_id)}/file${cite.page ? `#page=${cite.page}` : ""}`;
    link.href = href;
    link.onclick = (ev) => openFile(ev, cite.document_id, cite.page);
    box.dataset.page = cite.page ?? "";
    box.dataset.docId = cite.document_id || "";
    box.dataset.chunkId = cite.chunk_id || "";
    box.hidden = false;
    document.body.classList.add("citation-open");
    $("citation-close").focus();
    showPage(cite);
  }

  /* The cited page in the panel: the PDF page image with the cited lines boxed,
   * and the page's text with the cited chunk marked (the only view for other
   * formats and for scans). The image is fetched with the API key, so it is
   * shown from an object URL. */
  let pageRequest = 0;
  let pageObjectUrl = null;

  function resetPageViewer() {
    pageRequest += 1;
    if (pageObjectUrl) URL.revokeObjectURL(pageObjectUrl);
    pageObjectUrl = null;
    const wrap = $("page-image-wrap");
    for (const node of Array.from(wrap.querySelectorAll(".page-highlight"))) node.remove();
    wrap.hidden = true;
    $("page-image").removeAttribute("src");
    clear($("page-text"));
    $("page-text").hidden = true;
    $("page-viewer").hidden = true;
    return pageRequest;
  }

  async function showPage(cite) {
    const request = resetPageViewer();
    if (!cite.document_id || !cite.page) return;
    const viewer = $("page-viewer");
    viewer.hidden = false;
    viewer.dataset.page = String(cite.page);
    $("page-viewer-status").textContent = t("pageLoading", { page: cite.page });
    const base = `/documents/${encodeURIComponent(cite.document_id)}/pages/${cite.page}`;
    const query = cite.chunk_id ? `?chunk_id=${encodeURIComponent(cite.chunk_id)}` : "";
    try {
      const view = await api(base + query);
      if (request !== pageRequest) return;
      $("page-viewer-status").textContent = t("pageShown", { page: view.page, count: view.page_count });
      renderPageText(view);
      if (view.image_url) await renderPageImage(view, request);
    } catch (err) {
      if (request === pageRequest) $("page-viewer-status").textContent = err.message || String(err);
    }
  }

  function renderPageText(view) {
    const box = $("page-text");
    clear(box);
    const text = view.text || "";
    const start = view.highlight_start;
    const end = view.highlight_end;
    if (typeof start === "number" && typeof end === "number" && end > start) {
      box.append(text.slice(0, start));
      box.append(el("mark", { class: "page-mark", text: text.slice(start, end) }));
      box.append(text.slice(end));
    } else {
      box.append(text);
    }
    box.hidden = !text;
    const mark = box.querySelector("mark");
    // Only the image is shown when the cited lines are boxed on it.
    if (view.image_url && view.boxes && view.boxes.length) box.hidden = true;
    else if (mark) mark.scrollIntoView({ block: "center" });
  }

  async function renderPageImage(view, request) {
    const res = await rawFetch(view.image_url);
    const blob = await res.blob();
    if (request !== pageRequest) return;
    pageObjectUrl = URL.createObjectURL(blob);
    const img = $("page-image");
    img.alt = t("pageImageAlt", { page: view.page, name: view.filename });
    await new Promise((resolve) => {
      img.onload = resolve;
      img.onerror = resolve;
      img.src = pageObjectUrl;
    });
    if (request !== pageRequest) return;
    const wrap = $("page-image-wrap");
    wrap.hidden = false;
    for (const [left, top, right, bottom] of view.boxes || []) {
      const mark = el("div", { class: "page-highlight" });
      mark.style.left = `${(left * 100).toFixed(3)}%`;
      mark.style.top = `${(top * 100).toFixed(3)}%`;
      mark.style.width = `${((right - left) * 100).toFixed(3)}%`;
      mark.style.height = `${((bottom - top) * 100).toFixed(3)}%`;
      wrap.append(mark);
    }
    const first = wrap.querySelector(".page-highlight");
    if (first) first.scrollIntoView({ block: "center" });
  }

  function closeCitation() {
    const box = $("citation-box");
    if (box.hidden) return;
    box.hidden = true;
    resetPageViewer();
    document.body.classList.remove("citation-open");
    if (citationOpener && document.contains(citationOpener)) citationOpener.focus();
    citationOpener = null;
  }

  // ----------------------------------------------------------------- wiring

  function autoGrow(area) {
    area.style.height = "auto";
    area.style.height = `${Math.min(area.scrollHeight, 220)}px`;
  }

  function wire() {
    $("collection-select").addEventListener("change", (ev) => {
      state.collection = ev.target.value;
      safeStorageSet(COLLECTION_STORAGE, state.collection);
      setScope(null);
      loadDocuments();
    });
    $("delete-collection").addEventListener("click", deleteCollection);
    $("new-collection-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const input = $("new-collection-name");
      const name = input.value.trim();
      if (!name) return;
      input.value = "";
      createCollection(name);
    });
    $("refresh-docs").addEventListener("click", () => loadCollections());
    $("file-input").addEventListener("change", (ev) => {
      uploadFiles(ev.target.files);
      ev.target.value = "";
    });

    const panel = $("docs-panel");
    let dragDepth = 0;
    panel.addEventListener("dragenter", (ev) => {
      ev.preventDefault();
      dragDepth += 1;
      panel.classList.add("dragging");
    });
    panel.addEventListener("dragover", (ev) => {
      ev.preventDefault();
      if (ev.dataTransfer) ev.dataTransfer.dropEffect = "copy";
    });
    panel.addEventListener("dragleave", () => {
      dragDepth = Math.max(0, dragDepth - 1);
      if (!dragDepth) panel.classList.remove("dragging");
    });
    panel.addEventListener("drop", (ev) => {
      ev.preventDefault();
      dragDepth = 0;
      panel.classList.remove("dragging");
      if (ev.dataTransfer && ev.dataTransfer.files.length) uploadFiles(ev.dataTransfer.files);
    });
    // A file dropped next to the panel must not navigate away from the page.
    window.addEventListener("dragover", (ev) => ev.preventDefault());
    window.addEventListener("drop", (ev) => ev.preventDefault());

    $("scope-clear").addEventListener("click", () => setScope(null));

    $("key-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      state.apiKey = $("api-key").value.trim();
      safeStorageSet(KEY_STORAGE, state.apiKey);
      $("key-panel").hidden = true;
      toast(t("apiKeySaved"));
      loadCollections();
    });

    const input = $("chat-input");
    input.addEventListener("input", () => autoGrow(input));
    input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing && ev.keyCode !== 229) {
        ev.preventDefault();
        $("chat-form").requestSubmit();
      }
    });
    $("chat-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const text = input.value.trim();
      if (!text || state.busy) return;
      input.value = "";
      autoGrow(input);
      sendMessage(text);
    });
    $("new-chat").addEventListener("click", newChat);

    $("citation-close").addEventListener("click", closeCitation);
    document.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") closeCitation();
    });

    const toggle = $("toggle-sidebar");
    toggle.addEventListener("click", () => {
      const open = document.body.classList.toggle("sidebar-open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    });
    // On narrow screens the side panel is an overlay: a click on the chat closes it.
    document.querySelector(".chat").addEventListener("click", (ev) => {
      if (!document.body.classList.contains("sidebar-open") || toggle.contains(ev.target)) return;
      document.body.classList.remove("sidebar-open");
      toggle.setAttribute("aria-expanded", "false");
    });
  }

  function init() {
    applyStaticTranslations();
    if (state.apiKey) $("api-key").value = state.apiKey;
    setScope(null);
    wire();
    loadCollections();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
