// LoRA Studio: show the warnings LoRA Studio added to a generation as a toast.
//
// The prompt hook adds each warning to the generation's comments ("LoRA Studio: ..."), which both WebUIs
// render in #html_log_txt2img / #html_log_img2img. Watching that element works the same in A1111
// (gradio 3.41) and Forge (gradio 4.40, where processing runs outside the request thread and gr.Warning
// does not reach the browser). Turned off by the setting "Show LoRA Studio warnings as a popup".
(function() {
    "use strict";

    var PREFIX = "LoRA Studio: ";
    var TABS = ["txt2img", "img2img"];
    var lastSeen = {};
    var HIDE_AFTER_MS = 12000;

    function enabled() {
        return typeof opts === "undefined" || opts.lora_studio_show_toast !== false;
    }

    function container() {
        var box = document.getElementById("lora-studio-toasts");
        if (box) {
            return box;
        }
        box = document.createElement("div");
        box.id = "lora-studio-toasts";
        box.setAttribute("role", "status");
        box.setAttribute("aria-live", "polite");
        box.style.cssText = "position:fixed;right:1em;bottom:1em;z-index:10000;display:flex;" +
            "flex-direction:column;gap:0.5em;max-width:min(36em,90vw);pointer-events:none;";
        document.body.appendChild(box);
        return box;
    }

    function showToast(lines) {
        var toast = document.createElement("div");
        toast.className = "lora-studio-toast";
        toast.title = "click to close";
        toast.style.cssText = "pointer-events:auto;cursor:pointer;padding:0.6em 0.9em;border-radius:6px;" +
            "background:#3b2f00;color:#ffe9a8;border:1px solid #b38f00;box-shadow:0 2px 8px rgba(0,0,0,.35);" +
            "font-size:0.9em;line-height:1.35;white-space:pre-wrap;";
        var title = document.createElement("div");
        title.textContent = "LoRA Studio";
        title.style.cssText = "font-weight:bold;margin-bottom:0.25em;";
        toast.appendChild(title);
        lines.forEach(function(line) {
            var row = document.createElement("div");
            row.textContent = line;
            toast.appendChild(row);
        });
        toast.addEventListener("click", function() {
            toast.remove();
        });
        container().appendChild(toast);
        setTimeout(function() {
            toast.remove();
        }, HIDE_AFTER_MS);
    }

    function warningsIn(element) {
        var text = element.innerText || element.textContent || "";
        var out = [];
        text.split("\n").forEach(function(line) {
            line = line.trim();
            if (line.indexOf(PREFIX) === 0 && out.indexOf(line.substring(PREFIX.length)) < 0) {
                out.push(line.substring(PREFIX.length));
            }
        });
        return out;
    }

    function check() {
        if (typeof gradioApp !== "function") {
            return;
        }
        TABS.forEach(function(tab) {
            var log = gradioApp().querySelector("#html_log_" + tab);
            if (!log) {
                return;
            }
            var key = log.innerHTML;
            if (lastSeen[tab] === key) {
                return;
            }
            lastSeen[tab] = key;
            var lines = warningsIn(log);
            if (lines.length && enabled()) {
                showToast(lines);
            }
        });
    }

    if (typeof onAfterUiUpdate === "function") {
        onAfterUiUpdate(check);
    } else if (typeof onUiUpdate === "function") {
        onUiUpdate(check);
    }
})();
