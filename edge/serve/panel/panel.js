// The appliance panel: controls built from the server's command set (GET /v1/commands), a simulated
// appliance state held in this page, and requests typed or spoken (hold to talk) sent to POST /v1/commands.
// It follows GET /v1/events, so a command from another page or from the assistant's voice shows here too.
// No libraries and no network beyond the server that serves this page.
"use strict";

const VERBS = new Set(["set", "start", "stop", "cancel", "switch", "turn", "on", "off", "get", "choose", "report"]);
const CLEARS = /(^|_)(off|cancel|stop|reset|clear)(_|$)/;
const UNITS = { celsius: "°C", fahrenheit: "°F", minutes: "min", seconds: "s", percent: "%" };
const TARGET_RATE = 16000;
// sent with this page's own requests and echoed in their events, so the page does not apply its command twice
const CLIENT = Math.random().toString(36).slice(2, 12);

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
};

let commandSet = null;
const state = {}; // "command.arg" or "command.selector.arg" -> value
const timers = {}; // "command" -> end time (ms) of a running countdown
const views = []; // functions that redraw one control from `state`
const cards = {}; // group -> card element

// --- the command set, as controls -----------------------------------------------------------

/** The thing a command acts on: its name without verbs (set_oven_temperature -> oven). */
function groupOf(name) {
  return name.split("_").find((w) => !VERBS.has(w)) || name;
}

function label(name) {
  return name.replace(/[_-]/g, " ");
}

function format(arg, value) {
  if (value === undefined) return "–";
  if (typeof value === "boolean") return value ? "on" : "off";
  return UNITS[arg] ? `${value} ${UNITS[arg]}` : String(value);
}

/** The first enum argument of a command that has others picks which thing it sets (set_light: room). */
function selectorOf(command) {
  const names = Object.keys(command.args);
  return names.length > 1 && command.args[names[0]].enum ? names[0] : null;
}

function key(name, args, arg, selector) {
  return selector ? `${name}.${args[selector]}.${arg}` : `${name}.${arg}`;
}

function current(name, arg, spec, selectorValue) {
  const k = selectorValue === undefined ? `${name}.${arg}` : `${name}.${selectorValue}.${arg}`;
  if (state[k] !== undefined) return state[k];
  if (spec.enum) return spec.enum[0];
  if (spec.type === "boolean") return false;
  if (spec.type === "string") return "";
  return spec.minimum ?? 0;
}

/** Tapping a control issues the command with that argument changed and the others as they are. */
function tap(name, changes, selectorValue) {
  const command = commandSet.commands[name];
  const selector = selectorOf(command);
  const args = {};
  for (const [arg, spec] of Object.entries(command.args)) {
    args[arg] = arg in changes ? changes[arg] : arg === selector ? selectorValue : current(name, arg, spec, selectorValue);
  }
  apply({ command: name, args }, { source: "tap" });
}

function segment(values, isOn, onTap, text = String) {
  const seg = el("div", { className: "seg" });
  for (const value of values) {
    const b = el("button", { type: "button", textContent: text(value) });
    b.addEventListener("click", () => onTap(value));
    views.push(() => b.setAttribute("aria-pressed", String(isOn(value))));
    seg.append(b);
  }
  return seg;
}

function control(name, arg, spec, selectorValue) {
  const k = selectorValue === undefined ? `${name}.${arg}` : `${name}.${selectorValue}.${arg}`;
  const set = (value) => tap(name, { [arg]: value }, selectorValue);
  if (spec.enum) return segment(spec.enum, (v) => state[k] === v, set);
  if (spec.type === "boolean") return segment([true, false], (v) => state[k] === v, set, (v) => (v ? "On" : "Off"));
  if (spec.type === "integer" || spec.type === "number") {
    const low = spec.minimum ?? 0;
    const high = spec.maximum ?? low + 100;
    if (spec.type === "integer" && high - low <= 10) {
      const values = Array.from({ length: high - low + 1 }, (_, i) => low + i);
      return segment(values, (v) => state[k] === v, set);
    }
    const range = el("input", { type: "range", min: low, max: high, step: spec.type === "integer" ? (high - low > 100 ? 5 : 1) : "any" });
    range.setAttribute("aria-label", label(arg));
    const out = el("output");
    range.addEventListener("input", () => (out.textContent = format(arg, Number(range.value))));
    range.addEventListener("change", () => set(spec.type === "integer" ? Math.round(Number(range.value)) : Number(range.value)));
    views.push(() => {
      range.value = state[k] ?? low;
      out.textContent = format(arg, state[k]);
    });
    return el("div", { className: "slider" }, range, out);
  }
  const input = el("input", { type: "text", maxLength: spec.maxLength || 64 });
  const b = el("button", { type: "button", textContent: "Set" });
  b.addEventListener("click", () => set(input.value));
  views.push(() => (input.value = state[k] ?? ""));
  return el("div", { className: "slider" }, input, b);
}

function commandRows(name, command) {
  const selector = selectorOf(command);
  const args = Object.entries(command.args);
  if (!selector) {
    return args.map(([arg, spec]) => el("div", { className: "row" }, el("span", { className: "label", textContent: label(arg) }), control(name, arg, spec)));
  }
  const others = args.filter(([arg]) => arg !== selector);
  const choices = command.args[selector].enum;
  if (others.length === 1 && others[0][1].type === "boolean") {
    // one switch per choice (a light per room): the button is the switch
    const [arg] = others[0];
    const grid = el("div", { className: "rooms" });
    for (const choice of choices) {
      const k = `${name}.${choice}.${arg}`;
      const b = el("button", { type: "button", textContent: label(String(choice)) });
      b.dataset.state = k;
      b.addEventListener("click", () => tap(name, { [arg]: !state[k] }, choice));
      views.push(() => b.setAttribute("aria-pressed", String(state[k] === true)));
      grid.append(b);
    }
    return [grid];
  }
  return choices.map((choice) =>
    el("div", { className: "row" }, el("span", { className: "label", textContent: label(String(choice)) }), ...others.map(([arg, spec]) => control(name, arg, spec, choice))),
  );
}

function countdownOf(name) {
  const left = Math.max(0, Math.round((timers[name] - Date.now()) / 1000));
  return left > 0 ? `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}` : "done";
}

/** What a group is doing, for its card's title: "180 °C · bake", "9:41", "off". */
function summary(group) {
  const parts = [];
  for (const [name, command] of Object.entries(commandSet.commands)) {
    if (groupOf(name) !== group || selectorOf(command)) continue;
    if (name in timers) {
      parts.push(countdownOf(name));
      continue;
    }
    for (const arg of Object.keys(command.args)) {
      if (state[`${name}.${arg}`] !== undefined) parts.push(format(arg, state[`${name}.${arg}`]));
    }
  }
  for (const [name, command] of Object.entries(commandSet.commands)) {
    const selector = selectorOf(command);
    if (groupOf(name) !== group || !selector) continue;
    const on = command.args[selector].enum.filter((c) => Object.keys(command.args).some((a) => state[`${name}.${c}.${a}`] === true));
    parts.push(on.length ? `${on.length} on` : "all off");
  }
  return parts.length ? parts.join(" · ") : "off";
}

function build() {
  const groups = {};
  for (const [name, command] of Object.entries(commandSet.commands)) {
    if (name === commandSet.unknown) continue;
    (groups[groupOf(name)] ||= []).push([name, command]);
  }
  $("title").textContent = label(commandSet.name || "panel");
  for (const [group, members] of Object.entries(groups)) {
    const bare = members.filter(([, c]) => Object.keys(c.args).length === 0);
    if (bare.length === members.length && members.length === 1) {
      // a command with nothing to set and nothing beside it (status): a button in the header
      const [name] = members[0];
      const b = el("button", { type: "button", textContent: label(name), title: commandSet.commands[name].description });
      b.addEventListener("click", () => apply({ command: name, args: {} }, { source: "tap" }));
      $("actions").append(b);
      continue;
    }
    const value = el("span", { className: "value" });
    value.dataset.summary = group;
    views.push(() => (value.textContent = summary(group)));
    const card = el("section", { className: "card" }, el("h2", {}, el("span", { textContent: label(group) }), value));
    card.dataset.group = group;
    for (const [name, command] of members) {
      if (Object.keys(command.args).length) card.append(...commandRows(name, command));
    }
    const buttons = bare.map(([name]) => {
      const b = el("button", { type: "button", textContent: label(name), title: commandSet.commands[name].description });
      b.addEventListener("click", () => apply({ command: name, args: {} }, { source: "tap" }));
      return b;
    });
    if (buttons.length) card.append(el("div", { className: "row end" }, ...buttons));
    cards[group] = card;
    $("groups").append(card);
  }
  redraw();
  setInterval(() => Object.keys(timers).length && redraw(), 1000);
}

function redraw() {
  for (const view of views) view();
}

// --- commands change the simulated appliances -------------------------------------------------

function apply(cmd, { source, transcript } = {}) {
  const command = commandSet.commands[cmd.command];
  const group = groupOf(cmd.command);
  let note = "";
  if (cmd.command === commandSet.unknown || !command) {
    note = "not something this panel does";
  } else if (Object.keys(cmd.args).length === 0 && CLEARS.test(cmd.command)) {
    for (const k of Object.keys(state)) if (groupOf(k.split(".")[0]) === group) delete state[k];
    for (const name of Object.keys(timers)) if (groupOf(name) === group) delete timers[name];
  } else if (Object.keys(cmd.args).length === 0) {
    note = Object.keys(cards).map((g) => `${label(g)}: ${summary(g)}`).join("; ");
  } else {
    const selector = selectorOf(command);
    for (const [arg, value] of Object.entries(cmd.args)) {
      if (arg !== selector) state[key(cmd.command, cmd.args, arg, selector)] = value;
    }
    const duration = cmd.args.minutes !== undefined ? cmd.args.minutes * 60 : cmd.args.seconds;
    if (duration !== undefined && /^start/.test(cmd.command)) timers[cmd.command] = Date.now() + duration * 1000;
  }
  redraw();
  const card = cards[group];
  if (card) {
    card.classList.add("flash");
    setTimeout(() => card.classList.remove("flash"), 800);
  }
  const result = $("result");
  result.className = "";
  const args = Object.entries(cmd.args).map(([a, v]) => `${label(a)}: ${typeof v === "boolean" ? v : format(a, v)}`).join(", ");
  result.replaceChildren(
    ...(transcript !== undefined ? [`heard “${transcript}” → `] : source === "tap" ? ["tapped → "] : []),
    el("code", { textContent: cmd.command }),
    args ? ` ${args}` : "",
    note ? ` — ${note}` : "",
  );
  result.dataset.command = JSON.stringify(cmd);
  result.dataset.transcript = transcript ?? "";
  result.dataset.count = String(Number(result.dataset.count) + 1);
}

function showError(message) {
  const result = $("result");
  result.className = "error";
  result.textContent = message;
  result.dataset.count = String(Number(result.dataset.count) + 1);
}

const KEY_ITEM = "edge-api-key";

/** fetch() for /v1: a server started with --api-key answers 401 without the key, so the page asks for it
 * once and keeps it in this browser (localStorage: this origin only). */
async function api(path, options = {}) {
  for (let asked = 0; ; asked++) {
    const key = localStorage.getItem(KEY_ITEM);
    const headers = { ...options.headers, ...(key ? { Authorization: `Bearer ${key}` } : {}) };
    const response = await fetch(path, { ...options, headers });
    if (response.status !== 401 || asked === 2) return response;
    const typed = window.prompt("This panel's server needs its API key (edge-run --api-key):");
    if (!typed) return response;
    localStorage.setItem(KEY_ITEM, typed.trim());
  }
}

async function post(body, contentType) {
  const headers = { "Content-Type": contentType, "X-Edge-Client": CLIENT };
  const response = await api("/v1/commands", { method: "POST", headers, body });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error?.message || `the server answered ${response.status}`);
  return data;
}

async function ask(event) {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  $("send").disabled = true;
  $("result").className = "";
  $("result").textContent = "Thinking…";
  try {
    const { command, args } = await post(JSON.stringify({ text }), "application/json");
    apply({ command, args }, { source: "text" });
    $("text").value = "";
  } catch (e) {
    showError(e.message);
  } finally {
    $("send").disabled = false;
  }
}

// --- hold to talk: microphone -> 16 kHz mono 16-bit WAV -> POST /v1/commands --------------------

let recording = null;

async function startTalk(event) {
  event.preventDefault();
  if (recording || $("talk").disabled) return;
  if (event.pointerId !== undefined) $("talk").setPointerCapture(event.pointerId);
  // the audio context is made inside the press itself: browsers only start audio on a user gesture
  const rec = (recording = { chunks: [], released: false, ctx: new AudioContext() });
  $("talk").textContent = "Opening mic…";
  try {
    if (!navigator.mediaDevices) throw new Error("the microphone needs the page opened from localhost or https");
    rec.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    await rec.ctx.resume();
    rec.source = rec.ctx.createMediaStreamSource(rec.stream);
    // ScriptProcessor rather than an AudioWorklet: one file, and every kiosk browser still has it
    rec.processor = rec.ctx.createScriptProcessor(4096, 1, 1);
    rec.processor.onaudioprocess = (e) => rec.chunks.push(new Float32Array(e.inputBuffer.getChannelData(0)));
    rec.source.connect(rec.processor);
    rec.processor.connect(rec.ctx.destination);
    // only now is sound recorded: say so, or the first word is spoken into a microphone still opening
    $("talk").classList.add("recording");
    $("talk").textContent = "Listening…";
    if (rec.released) stopTalk();
  } catch (e) {
    recording = null;
    rec.ctx.close();
    resetTalk();
    showError(`microphone unavailable: ${e.message}`);
  }
}

async function stopTalk() {
  const rec = recording;
  if (!rec) return;
  rec.released = true;
  if (!rec.processor) return; // still opening the microphone: stops as soon as it is open
  recording = null;
  rec.source.disconnect();
  rec.processor.disconnect();
  rec.stream.getTracks().forEach((t) => t.stop());
  const rate = rec.ctx.sampleRate;
  await rec.ctx.close();
  resetTalk();
  const samples = concat(rec.chunks);
  if (samples.length < rate * 0.3) {
    showError("hold the button while you speak");
    return;
  }
  $("talk").disabled = true;
  $("result").className = "";
  $("result").textContent = "Thinking…";
  try {
    const { command, args, transcript } = await post(wav(downsample(samples, rate, TARGET_RATE), TARGET_RATE), "audio/wav");
    apply({ command, args }, { source: "voice", transcript });
  } catch (e) {
    showError(e.message);
  } finally {
    $("talk").disabled = false;
  }
}

function resetTalk() {
  $("talk").classList.remove("recording");
  $("talk").textContent = "Hold to talk";
}

function concat(chunks) {
  const out = new Float32Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** Averages each output sample's span of input: a box low-pass, enough for speech at 16 kHz. */
function downsample(samples, from, to) {
  if (from === to) return samples;
  const ratio = from / to;
  const out = new Float32Array(Math.floor(samples.length / ratio));
  for (let i = 0; i < out.length; i++) {
    const start = Math.floor(i * ratio);
    const end = Math.max(start + 1, Math.floor((i + 1) * ratio));
    let sum = 0;
    for (let j = start; j < end; j++) sum += samples[j];
    out[i] = sum / (end - start);
  }
  return out;
}

/** A 16-bit mono PCM WAV file. */
function wav(samples, rate) {
  const view = new DataView(new ArrayBuffer(44 + samples.length * 2));
  const text = (at, s) => [...s].forEach((ch, i) => view.setUint8(at + i, ch.charCodeAt(0)));
  text(0, "RIFF");
  view.setUint32(4, 36 + samples.length * 2, true);
  text(8, "WAVEfmt ");
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 2, true);
  view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  text(36, "data");
  view.setUint32(40, samples.length * 2, true);
  samples.forEach((s, i) => view.setInt16(44 + i * 2, Math.max(-1, Math.min(1, s)) * 0x7fff, true));
  return new Blob([view.buffer], { type: "audio/wav" });
}

// --- live events: other pages' commands and the assistant's voice (GET /v1/events) ---------------

function onEvent(event) {
  if (event.event === "command" && event.client !== CLIENT) {
    apply({ command: event.command, args: event.args || {} }, { source: event.source, transcript: event.transcript });
  } else if (event.event === "wake") {
    $("result").className = "";
    $("result").textContent = "Listening…";
  } else if (event.event === "answer") {
    $("result").className = "";
    $("result").textContent = `heard “${event.transcript}” → ${event.text || "(no answer)"}`;
    $("result").dataset.count = String(Number($("result").dataset.count) + 1);
  } else if (event.event === "timeout") {
    $("result").textContent = "No request heard.";
  } else if (event.event === "error") {
    showError(event.message);
  }
}

/** Reads the server-sent events of GET /v1/events and reconnects when they stop. fetch() rather than
 * EventSource: EventSource cannot send the API key of a server started with --api-key. */
async function follow() {
  for (;;) {
    try {
      const response = await api("/v1/events", { headers: { Accept: "text/event-stream" } });
      if (response.ok) {
        document.body.dataset.live = "true";
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const lines = buffer.slice(0, end).split("\n");
            buffer = buffer.slice(end + 2);
            const data = lines.filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
            if (data) onEvent(JSON.parse(data));
          }
        }
      }
    } catch (e) {
      // the server restarted or dropped this page as too slow: connect again
    }
    document.body.dataset.live = "false";
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

// --- start ----------------------------------------------------------------------------------------

async function main() {
  const talk = $("talk");
  talk.addEventListener("pointerdown", startTalk);
  for (const type of ["pointerup", "pointercancel"]) talk.addEventListener(type, stopTalk);
  talk.addEventListener("keydown", (e) => (e.key === " " || e.key === "Enter") && !e.repeat && startTalk(e));
  talk.addEventListener("keyup", (e) => (e.key === " " || e.key === "Enter") && stopTalk());
  talk.addEventListener("contextmenu", (e) => e.preventDefault()); // a long press is not a right click
  $("ask").addEventListener("submit", ask);
  try {
    const response = await api("/v1/commands");
    const data = await response.json();
    if (!response.ok) throw new Error(data.error?.message || `the server answered ${response.status}`);
    commandSet = data;
  } catch (e) {
    showError(e.message);
    $("send").disabled = talk.disabled = true;
    return;
  }
  if (!commandSet.speech) {
    talk.disabled = true;
    talk.title = "the server has no speech model (edge-run --serve --asr-model BUNDLE)";
  }
  build();
  $("result").textContent = commandSet.description || "Ready.";
  document.body.dataset.ready = "true";
  follow();
}

main();
