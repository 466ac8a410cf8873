// LoRA Studio browser panel behaviour (A1111 / Forge / standalone; gradio 3.41 and 4.40).
//
// - click a card: insert <lora:name:weight> and its trigger words into the active prompt at the cursor;
//   click a character card: insert <char:NAME> (expanded by the prompt hook at generation);
//   click it again: remove them (and the sidecar's negative text from the negative prompt);
// - the "i" button on a card and the page links talk to python through a hidden command box;
// - the checkpoint dropdown is watched, so compatibility badges follow the selected checkpoint: the tab's
//   cards are re-rendered by python; the cards of the "LoRA Studio" page of the txt2img / img2img
//   extra-networks pane (.lss-pane-card) carry their level for every checkpoint class and are updated here;
// - pane cards: click toggles the text in the prompt of the tab the pane belongs to; the pencil opens
//   LoRA Studio's editor for that LoRA; "compatible only" hides the incompatible ones (unknown stay).
//
// Uses the WebUI's gradioApp()/updateInput() from its script.js when they exist; stands alone otherwise.
(function () {
    "use strict";
    if (window.loraStudio) return; // loaded twice (Reload UI)

    const PROMPTS = {
        txt2img: ["#txt2img_prompt", "#txt2img_neg_prompt"],
        img2img: ["#img2img_prompt", "#img2img_neg_prompt"],
        standalone: ["#lora_studio_prompt", "#lora_studio_negative"],
    };
    const CHECKPOINT_INPUTS = ["#setting_sd_model_checkpoint input", ".model_selection input"];
    const focused = new WeakSet();
    let lastPrompt = null;
    let lastCheckpointSent = null;

    // The page's root, looked up once: the WebUI's gradioApp() finds <gradio-app> by counting every element of
    // the document after any change (in a WebUI with a big extra-networks pane, hundreds of thousands).
    let appRoot = null;

    function app() {
        if (appRoot && appRoot.isConnected) return appRoot;
        if (typeof gradioApp === "function") appRoot = gradioApp();
        else {
            const el = document.querySelector("gradio-app");
            appRoot = (el && el.shadowRoot) || document;
        }
        return appRoot;
    }

    // Every element of a class in the page, as the browser's live list (kept up to date by the browser, walked
    // again only after the page changed) rather than a walk of the whole page per call (the watchers below run
    // several times a second).
    const classLists = {};

    function byClass(name) {
        const root = app();
        const cached = classLists[name];
        if (cached && cached.root === root) return cached.list;
        if (!root.getElementsByClassName) return root.querySelectorAll("." + name); // a shadow root: no live list
        const list = root.getElementsByClassName(name);
        classLists[name] = {root: root, list: list};
        return list;
    }

    function eachOf(name, fn) {
        const list = byClass(name);
        for (let i = 0; i < list.length; i++) fn(list[i]);
    }

    function q(sel, root) {
        return (root || app()).querySelector(sel);
    }

    function field(sel) {
        const host = q(sel);
        if (!host) return null;
        if (host.matches && host.matches("textarea, input")) return host;
        return host.querySelector("textarea") || host.querySelector("input");
    }

    function notify(el) {
        if (typeof updateInput === "function") {
            updateInput(el);
            return;
        }
        const e = new Event("input", {bubbles: true});
        Object.defineProperty(e, "target", {value: el});
        el.dispatchEvent(e);
    }

    function visible(el) {
        return !!el && el.offsetParent !== null;
    }

    // ---------------------------------------------------------------------------------------------
    // which prompt

    function kindOf(textarea) {
        for (const [kind, sels] of Object.entries(PROMPTS)) {
            for (let i = 0; i < sels.length; i++) {
                const host = q(sels[i]);
                if (host && host.contains(textarea)) return [kind, i];
            }
        }
        return null;
    }

    function boxes(kind) {
        return [field(PROMPTS[kind][0]), field(PROMPTS[kind][1])];
    }

    function targetPrompts(fromEl) {
        const tab = fromEl && fromEl.closest && fromEl.closest("#tab_txt2img, #tab_img2img");
        if (tab) return boxes(tab.id === "tab_img2img" ? "img2img" : "txt2img");
        if (typeof get_uiCurrentTabContent === "function") {
            const cur = get_uiCurrentTabContent();
            if (cur && cur.id === "tab_img2img") return boxes("img2img");
            if (cur && cur.id === "tab_txt2img") return boxes("txt2img");
        }
        if (lastPrompt && app().contains(lastPrompt)) {
            const k = kindOf(lastPrompt);
            if (k) return boxes(k[0]);
        }
        for (const kind of ["txt2img", "standalone", "img2img"]) {
            const b = boxes(kind);
            if (b[0]) return b;
        }
        return [null, null];
    }

    document.addEventListener("focusin", function (ev) {
        const t = ev.target;
        if (t && t.tagName === "TEXTAREA" && kindOf(t)) {
            focused.add(t);
            if (kindOf(t)[1] === 0) lastPrompt = t;
        }
    }, true);

    // ---------------------------------------------------------------------------------------------
    // text edits

    function escapeRe(s) {
        return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    }

    function normalize(text) {
        return (" " + text.toLowerCase()
            .replace(/\\([()[\]])/g, "$1")
            .replace(/<[^>]*>/g, " ")
            .replace(/:\s*-?\d+(\.\d+)?/g, " ")
            .replace(/[()[\]{},]/g, " ")
            .replace(/\s+/g, " ") + " ");
    }

    function hasPhrase(text, phrase) {
        const p = normalize(phrase).trim();
        return p.length > 0 && normalize(text).indexOf(" " + p + " ") >= 0;
    }

    function tagRegex(name) {
        return new RegExp("<(?:lora|lyco):" + escapeRe(name) + "(?::[^>]*)?>", "i");
    }

    function tidy(text) {
        return text
            .replace(/[ \t]*,[ \t]*(,[ \t]*)+/g, ", ")
            .replace(/^[ \t]*,[ \t]*/, "")
            .replace(/[ \t]*,[ \t]*$/, "")
            .replace(/[ \t]{2,}/g, " ")
            .replace(/^[ \t]+|[ \t]+$/g, "");
    }

    function insertAt(textarea, snippet) {
        const value = textarea.value;
        let start = value.length, end = value.length;
        if (focused.has(textarea)) {
            start = textarea.selectionStart;
            end = textarea.selectionEnd;
        }
        let before = value.slice(0, start);
        let after = value.slice(end);
        let prefix = "";
        if (before.trim().length) {
            if (/[,(]\s*$/.test(before)) {
                prefix = /\s$/.test(before) ? "" : " ";
            } else {
                before = before.replace(/[ \t]+$/, "");
                prefix = /\n$/.test(before) ? "" : ", ";
            }
        }
        let suffix = "";
        if (after.trim().length && !/^\s*[,)]/.test(after)) {
            suffix = ", ";
            after = after.replace(/^\s+/, "");
        }
        textarea.value = before + prefix + snippet + suffix + after;
        const caret = (before + prefix + snippet).length;
        try {
            textarea.setSelectionRange(caret, caret);
        } catch (e) { /* not focusable */ }
        notify(textarea);
    }

    function removeTag(textarea, name, words) {
        const value = textarea.value;
        const alts = words.filter(Boolean).map(escapeRe).join("|");
        const wordsPart = alts ? "(?:[ \\t]*,[ \\t]*(?:" + alts + "))*" : "";
        const re = new RegExp("[ \\t]*<(?:lora|lyco):" + escapeRe(name) + "(?::[^>]*)?>" + wordsPart, "i");
        const m = value.match(re);
        if (!m) return false;
        textarea.value = tidy(value.slice(0, m.index) + value.slice(m.index + m[0].length));
        notify(textarea);
        return true;
    }

    function toggleCard(card) {
        const name = card.dataset.name || "";
        const tag = card.dataset.tag || "";
        let words = [];
        try {
            words = JSON.parse(card.dataset.words || "[]");
        } catch (e) { words = []; }
        const neg = card.dataset.neg || "";
        const [prompt, negative] = targetPrompts(card);
        if (!prompt) return;
        if (tagRegex(name).test(prompt.value)) {
            removeTag(prompt, name, words);
            if (neg && negative && negative.value.indexOf(neg) >= 0) {
                negative.value = tidy(negative.value.replace(neg, ""));
                notify(negative);
            }
        } else {
            const missing = words.filter(function (w) { return !hasPhrase(prompt.value, w); });
            insertAt(prompt, [tag].concat(missing).join(", "));
            if (neg && negative && !hasPhrase(negative.value, neg)) {
                negative.value = negative.value.trim() ? negative.value.replace(/[\s,]*$/, "") + ", " + neg : neg;
                notify(negative);
            }
        }
        markCards();
    }

    function charRegex(name) {
        return new RegExp("[ \\t]*<char:" + escapeRe(name) + "(?::[^>]*)?>[ \\t]*,?", "i");
    }

    // a character card: insert <char:NAME> (a second click removes it); LoRA Studio expands it at generation
    function toggleCharacter(card) {
        const name = card.dataset.char || "";
        const [prompt] = targetPrompts(card);
        if (!prompt || !name) return;
        const re = charRegex(name);
        if (re.test(prompt.value)) {
            prompt.value = tidy(prompt.value.replace(re, " "));
            notify(prompt);
        } else {
            insertAt(prompt, "<char:" + name + ">");
        }
        markCards();
    }

    function insertWord(el, word) {
        const [prompt] = targetPrompts(el);
        if (prompt && !hasPhrase(prompt.value, word)) insertAt(prompt, word);
    }

    function tagNames(text) {
        const names = new Set();
        const re = /<(?:lora|lyco):([^:>]+)/gi;
        let m;
        while ((m = re.exec(text || "")) !== null) names.add(m[1].trim().toLowerCase());
        return names;
    }

    function markCards() {
        const [prompt] = targetPrompts(q("#lora_studio_browser"));
        const text = prompt ? prompt.value : "";
        const inTab = tagNames(text);
        eachOf("lss-card", function (card) {
            card.classList.toggle("lss-in-prompt", inTab.has((card.dataset.name || "").toLowerCase()));
        });
        eachOf("lss-pane", function (pane) {
            const [p] = targetPrompts(pane);
            const inPane = tagNames(p ? p.value : "");
            pane.querySelectorAll(".lss-pane-card").forEach(function (card) {
                card.classList.toggle("lss-in-prompt", inPane.has((card.dataset.name || "").toLowerCase()));
            });
        });
        const texts = new Map(); // one prompt read per tab, not per card
        eachOf("lss-char-card", function (card) {
            const [p] = targetPrompts(card);
            if (!texts.has(p)) texts.set(p, p ? p.value : "");
            const text = texts.get(p);
            card.classList.toggle("lss-in-prompt", !!text && charRegex(card.dataset.char || "\u0000").test(text));
        });
    }

    // ---------------------------------------------------------------------------------------------
    // python commands

    function send(cmd) {
        const box = field("#lora_studio_cmd");
        let btn = q("#lora_studio_cmd_btn");
        if (btn && btn.tagName !== "BUTTON") btn = btn.querySelector("button");
        if (!box || !btn) return false;
        cmd.t = Date.now();
        box.value = JSON.stringify(cmd);
        notify(box);
        setTimeout(function () { btn.click(); }, 0);
        return true;
    }

    document.addEventListener("click", function (ev) {
        const t = ev.target;
        if (!t || !t.closest) return;
        const page = t.closest("a.lss-pg");
        if (page) {
            ev.preventDefault();
            send({op: "page", page: parseInt(page.dataset.page, 10) || 1});
            return;
        }
        const word = t.closest("a.lss-word");
        if (word) {
            ev.preventDefault();
            insertWord(word, word.dataset.word || "");
            return;
        }
        if (t.closest(".tab-nav")) [0, 150].forEach(function (ms) { // a tab shown: its pane's badges at once
            setTimeout(function () {
                const value = selectedCheckpoint();
                if (value) updatePanes(value, true);
            }, ms);
        });
        if (t.classList && t.classList.contains("lss-pane-compat-only")) {
            setTimeout(function () {
                paneCompatOnly(t);
                const pane = t.closest(".lss-pane");
                if (pane) refillPane(pane, false);
            }, 0);
            return;
        }
        const more = t.closest(".lss-pane-more");
        if (more) {
            ev.preventDefault();
            refillPane(more.closest(".lss-pane"), true);
            return;
        }
        const charCard = t.closest(".lss-char-card");
        if (charCard) {
            ev.preventDefault();
            toggleCharacter(charCard);
            return;
        }
        const card = t.closest(".lss-card, .lss-pane-card");
        if (!card) return;
        if (card.classList.contains("lss-pane-card")) {
            if (t.closest(".lss-pane-edit")) {
                ev.preventDefault();
                ev.stopPropagation();
                openEditor(card.dataset.name || "");
                return;
            }
            if (t.closest(".button-row")) return; // the WebUI's own card buttons
        }
        ev.preventDefault();
        if (t.closest(".lss-info")) {
            send({op: "select", name: card.dataset.name || ""});
            return;
        }
        const remote = t.closest(".lss-fetch, .lss-newver");  // Civitai: fetch info / get the new version
        if (remote) {
            card.classList.add("lss-busy");
            send({op: remote.dataset.action, name: card.dataset.name || ""});
            return;
        }
        toggleCard(card);
    });

    document.addEventListener("keydown", function (ev) {
        const t = ev.target;
        if ((ev.key === "Enter" || ev.key === " ") && t && t.classList &&
            (t.classList.contains("lss-card") || t.classList.contains("lss-pane-card"))) {
            ev.preventDefault();
            toggleCard(t);
        }
        if ((ev.key === "Enter" || ev.key === " ") && t && t.classList && t.classList.contains("lss-char-card")) {
            ev.preventDefault();
            toggleCharacter(t);
        }
    });

    document.addEventListener("input", function (ev) {
        if (ev.target && ev.target.tagName === "TEXTAREA" && kindOf(ev.target)) markCards();
    }, true);

    // ---------------------------------------------------------------------------------------------
    // checkpoint watcher

    function checkpointInput() {
        for (const sel of CHECKPOINT_INPUTS) {
            const el = q(sel);
            if (el) return el;
        }
        return null;
    }

    function selectedCheckpoint() {
        const input = checkpointInput();
        if (!input || document.activeElement === input) return null;
        return (input.value || "").trim() || null;
    }

    // A checkpoint picked in the dropdown: the dropdown lets go of the focus as the option is pressed and shows
    // the new title a moment later; watch it frame by frame for a while (a read of one input) rather than
    // wait for the next poll.
    document.addEventListener("focusout", function (ev) {
        const input = ev.target;
        if (!input || input !== checkpointInput()) return;
        const before = input.value;
        const until = performance.now() + 1500;
        (function look() {
            if (input.value !== before && document.activeElement !== input) watchCheckpoint();
            else if (performance.now() < until) requestAnimationFrame(look);
        })();
    }, true);

    function watchCheckpoint() {
        const value = selectedCheckpoint();
        if (!value) return;
        updatePanes(value);
        const root = q("#lora_studio_browser .lss-root");
        if (!root) return;
        const rendered = root.dataset.checkpoint || "";
        if (value === rendered) {
            lastCheckpointSent = value;
            return;
        }
        if (value === lastCheckpointSent) return; // sent, waiting for the render
        lastCheckpointSent = value;
        send({op: "checkpoint", title: value});
    }

    // ---------------------------------------------------------------------------------------------
    // the extra-networks pane

    const LEVELS = {e: "exact", c: "cross-family", i: "incompatible", u: "unknown"};

    function paneData(pane, key) {
        try {
            return JSON.parse(pane.dataset[key] || "{}");
        } catch (e) { return {}; }
    }

    // How long the pane's own work took (the last 40: benchmarks/pane_webui.py reads them).
    const timings = [];

    function timed(what, t0) {
        timings.push({what: what, ms: performance.now() - t0});
        if (timings.length > 40) timings.shift();
    }

    function updatePane(pane, value) {
        const started = performance.now();
        const classes = paneData(pane, "lssClasses");
        const texts = paneData(pane, "lssTexts");
        const bare = value.replace(/ \[[^\]]*\]$/, "");
        let index = classes[value];
        if (index === undefined) index = classes[bare];
        if (index === undefined) index = -1;
        const counted = {exact: 0, "cross-family": 0, incompatible: 0, unknown: 0};
        // Few DOM writes per card: the WebUI's own scripts watch every mutation of the page.
        const cards = pane.querySelectorAll(".lss-pane-card"); // static: the loop changes their classes
        for (let i = 0; i < cards.length; i++) {
            const card = cards[i];
            const code = index >= 0 ? (card.dataset.lssLevels || "").charAt(index) : "u";
            const level = LEVELS[code] || "unknown";
            counted[level] += 1;
            const was = card.dataset.compat;
            if (was === level) continue;
            card.dataset.compat = level;
            card.classList.replace("lss-" + was, "lss-" + level);
            const badge = card.getElementsByClassName("lss-compat")[0];
            if (badge) {
                badge.classList.replace("lss-" + was, "lss-" + level);
                const text = texts[level] || level;
                if (badge.firstChild) badge.firstChild.nodeValue = text;
                else badge.textContent = text;
            }
        }
        // the characters' version badges (not counted: the counts are the LoRA cards')
        pane.querySelectorAll(".lss-pane-ver").forEach(function (badge) {
            const code = index >= 0 ? (badge.dataset.lssLevels || "").charAt(index) : "u";
            const level = LEVELS[code] || "unknown";
            const was = badge.dataset.compat;
            if (was === level) return;
            badge.dataset.compat = level;
            badge.classList.replace("lss-" + was, "lss-" + level);
            const word = badge.querySelector(".lss-ver-word");
            if (word) word.textContent = texts[level] || level;
        });
        // the summary counts the whole library (a big one has only a window of its cards rendered)
        const counts = paneData(pane, "lssCounts")[String(index)] || counted;
        pane.dataset.lssIncompatible = String(counts.incompatible || 0);
        pane.dataset.checkpoint = value;
        pane.dataset.lssApplied = value;
        const ckpt = pane.querySelector(".lss-pane-ckpt");
        if (ckpt) {
            ckpt.textContent = "badges for ";
            const b = document.createElement("b");
            b.textContent = value;
            ckpt.appendChild(b);
        }
        pane.querySelectorAll(".lss-pane-counts .lss-count").forEach(function (el) {
            for (const level of Object.keys(counts)) {
                if (el.classList.contains("lss-" + level)) {
                    el.textContent = counts[level] + " " + String(texts[level] || level).replace(/^\S+ /, "");
                }
            }
        });
        paneCompatOnly(pane.querySelector(".lss-pane-compat-only"));
        timed("badges", started);
    }

    // When the panes out of sight were last looked at (reading whether a pane is shown makes the browser
    // bring the page's layout up to date: done on a change of checkpoint, a click, and at most once a second).
    let outOfSight = {value: null, at: 0};

    function updatePanes(value, now) {
        // A pane out of sight (the other tab's, a closed pane) is updated when it is shown; visibility is
        // read for every pane before any is changed (a read after a change would force a layout).
        const pending = Array.from(byClass("lss-pane")).filter(function (pane) {
            return pane.dataset.lssApplied !== value;
        });
        if (!pending.length) return;
        const t = performance.now();
        if (!now && outOfSight.value === value && t - outOfSight.at < 1000) return;
        outOfSight = {value: value, at: t};
        const due = pending.filter(function (pane) { return pane.offsetParent !== null; });
        due.forEach(function (pane) {
            updatePane(pane, value);
            const only = pane.querySelector(".lss-pane-compat-only");
            if (only && only.checked) refillPane(pane, false); // another checkpoint: other cards match
        });
    }

    function paneCompatOnly(box) {
        if (!box) return;
        const pane = box.closest(".lss-pane");
        if (!pane) return;
        pane.classList.toggle("lss-only-compatible", box.checked);
        const known = pane.dataset.lssIncompatible;
        const hidden = !box.checked ? 0 : known !== undefined ? parseInt(known, 10) || 0
            : pane.querySelectorAll(".lss-pane-card.lss-incompatible").length;
        const note = pane.querySelector(".lss-hidden-note");
        if (note) note.textContent = hidden ? hidden + ' incompatible hidden by "compatible only"' : "";
    }

    // A big library's pane renders only a window of its cards (data-lss-window); the search box, "compatible
    // only" and "show more" ask the API for the matching window (the cards' HTML, made by the server).
    const paneRequests = new WeakMap();

    function paneWindowed(pane) {
        const total = parseInt(pane.dataset.lssTotal, 10) || 0;
        const size = parseInt(pane.dataset.lssWindow, 10) || 0;
        return size > 0 && total > size;
    }

    function paneSearchBox(pane) {
        return q("#" + (pane.dataset.tabname || "txt2img") + "_lora_studio_extra_search");
    }

    function refillPane(pane, append) {
        if (!paneWindowed(pane)) return; // every card is rendered: the WebUI's search and the CSS filter do it
        const box = paneSearchBox(pane);
        const only = pane.querySelector(".lss-pane-compat-only");
        const query = box ? box.value : "";
        const compat = !!(only && only.checked);
        const ckpt = pane.dataset.lssApplied || selectedCheckpoint() || pane.dataset.checkpoint || "";
        const more = pane.querySelector(".lss-pane-more");
        const offset = append && more ? parseInt(more.dataset.shown, 10) || 0 : 0;
        // the first window is the same for every checkpoint (the badges flip in place) unless "compatible only"
        const key = JSON.stringify([query, compat ? ckpt : ""]);
        if (!append && (pane.dataset.lssKey || JSON.stringify(["", ""])) === key) return;
        if (append && (pane.dataset.lssLoading || !more || !more.dataset.shown)) return;
        const seq = (paneRequests.get(pane) || 0) + 1;
        paneRequests.set(pane, seq);
        pane.dataset.lssLoading = "1";
        const params = new URLSearchParams({
            q: query, checkpoint: ckpt, compatible_only: compat ? "true" : "false",
            offset: String(offset), limit: pane.dataset.lssWindow,
        });
        const asked = performance.now();
        fetch("lora-studio/v1/pane/cards?" + params.toString(), {credentials: "same-origin"})
            .then(function (r) { return r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status)); })
            .then(function (data) {
                if (paneRequests.get(pane) !== seq) return; // a newer request took over
                timed("request", asked);
                const started = performance.now();
                const cards = pane.querySelector(".extra-network-cards");
                if (!cards) return;
                if (append) cards.insertAdjacentHTML("beforeend", data.html);
                else cards.innerHTML = data.html;
                const bar = pane.querySelector(".lss-pane-more");
                if (bar) bar.outerHTML = data.more;
                delete pane.dataset.lssLoading;
                watchMore(pane); // still on screen: the next window comes at once
                pane.dataset.lssKey = key;
                pane.dataset.lssApplied = ""; // badge the new cards for the dropdown's checkpoint
                updatePane(pane, ckpt);
                markCards();
                timed("window", started);
            })
            .catch(function (e) { console.warn("LoRA Studio: the pane's cards could not be loaded:", e); })
            .catch(function () { return null; })
            .then(function () { if (paneRequests.get(pane) === seq) delete pane.dataset.lssLoading; });
    }

    // The next window comes when the user scrolls near the end of the cards: the observer watches a card a
    // few rows before the last one. Not the "show more" bar: the WebUI scrolls the cards in a box of its own
    // and the bar sits below that box, on screen whatever the scroll (it would load window after window).
    const AHEAD = 24; // cards before the last
    const moreObserver = typeof IntersectionObserver === "function" ? new IntersectionObserver(function (entries) {
        entries.forEach(function (entry) {
            if (!entry.isIntersecting) return;
            moreObserver.unobserve(entry.target);
            const pane = entry.target.closest(".lss-pane");
            if (pane && pane.isConnected) refillPane(pane, true);
        });
    }, {rootMargin: "300px"}) : null;
    const watched = new WeakMap(); // pane -> the card watched

    function watchMore(pane) {
        if (!moreObserver) return;
        const before = watched.get(pane);
        if (before) moreObserver.unobserve(before);
        watched.delete(pane);
        const bar = pane.querySelector(".lss-pane-more");
        if (!bar || bar.hidden || !bar.dataset.shown) return;
        const cards = pane.getElementsByClassName("lss-pane-card");
        const card = cards[Math.max(0, cards.length - AHEAD)];
        if (!card) return;
        watched.set(pane, card);
        moreObserver.observe(card);
    }

    const searchTimers = {};
    document.addEventListener("input", function (ev) {
        const t = ev.target;
        if (!t || !t.id || !/_lora_studio_extra_search$/.test(t.id)) return;
        const tab = t.id.replace(/_lora_studio_extra_search$/, "");
        clearTimeout(searchTimers[tab]);
        searchTimers[tab] = setTimeout(function () {
            eachOf("lss-pane", function (pane) {
                if ((pane.dataset.tabname || "") === tab) refillPane(pane, false);
            });
        }, 60);
    }, true);

    function openEditor(name) {
        const buttons = app().querySelectorAll("#tabs > .tab-nav > button, #tabs > div > button");
        for (const b of buttons) {
            if (b.textContent.trim() === "LoRA Studio") {
                b.click();
                break;
            }
        }
        setTimeout(function () { send({op: "select", name: name}); }, 50);
    }

    function watchPanes() {
        let fresh = false;
        eachOf("lss-pane", function (pane) {
            if (pane.dataset.lssSeen) return;
            pane.dataset.lssSeen = "1"; // a pane (re)rendered by the WebUI: mark its cards, apply the toggle
            paneCompatOnly(pane.querySelector(".lss-pane-compat-only"));
            watchMore(pane);
            fresh = true;
        });
        if (fresh) markCards();
    }

    let markTimer = null;
    const observer = new MutationObserver(function () {
        if (markTimer) return;
        markTimer = setTimeout(function () { markTimer = null; markCards(); }, 50);
    });

    function start() {
        setInterval(watchCheckpoint, 150);
        setInterval(watchPanes, 300);
        const cards = q("#lora_studio_cards");
        if (cards) observer.observe(cards, {childList: true, subtree: true});
        else setTimeout(start2, 500);
    }

    function start2() {
        const cards = q("#lora_studio_cards");
        if (cards) observer.observe(cards, {childList: true, subtree: true});
        else setTimeout(start2, 500);
    }

    window.loraStudio = {
        send: send,
        toggleCard: toggleCard,
        toggleCharacter: toggleCharacter,
        updatePanes: updatePanes,
        timings: timings,
        hasPhrase: hasPhrase,
        targetPrompts: targetPrompts,
        currentPrompts: function (p, n) {
            if (p && p.trim()) return [p, n];
            const [prompt, negative] = targetPrompts(q("#lora_studio_browser"));
            return [prompt ? prompt.value : p, negative ? negative.value : n];
        },
    };

    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
    else start();
})();
