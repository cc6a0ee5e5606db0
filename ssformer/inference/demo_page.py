"""The demo page served by ``ssformer serve`` (a Python string, so it ships with the package)."""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>SSformer demo</title>
<style>
  body { font-family: sans-serif; margin: 1.5em; color: #222; }
  #result { display: flex; gap: 2em; align-items: flex-start; margin-top: 1em; }
  #result[hidden] { display: none; }  /* the flex display would otherwise override the attribute */
  #overlay { min-width: 320px; max-width: 70vw; max-height: 80vh; border: 1px solid #ccc; }
  table { border-collapse: collapse; }
  td { padding: 2px 8px; }
  .swatch { width: 1.2em; height: 1.2em; border: 1px solid #333; }
  #status.error { color: #b00; }
</style>
</head>
<body>
<h1>SSformer semantic segmentation</h1>
<p>Choose an image: it is sent to this machine's server only.</p>
<input type="file" id="file" accept="image/*">
<p id="status">No image yet.</p>
<div id="result" hidden>
  <img id="overlay" alt="segmentation overlay">
  <table id="legend"><thead><tr><th></th><th>class</th><th>share</th></tr></thead><tbody></tbody></table>
</div>
<script>
const statusLine = document.getElementById("status");

function setStatus(text, isError) {
  statusLine.textContent = text;
  statusLine.className = isError ? "error" : "";
}

async function upload(blob) {
  setStatus("Segmenting...", false);
  document.getElementById("result").hidden = true;
  try {
    const response = await fetch("/api/predict?overlay=1", {method: "POST", body: blob});
    const payload = await response.json();
    if (!response.ok) { setStatus("Error " + response.status + ": " + payload.error, true); return; }
    const body = document.querySelector("#legend tbody");
    body.innerHTML = "";
    for (const c of payload.classes) {
      const row = body.insertRow();
      const swatch = document.createElement("div");
      swatch.className = "swatch";
      swatch.style.background = "rgb(" + c.color.join(",") + ")";
      row.insertCell().appendChild(swatch);
      row.insertCell().textContent = c.index + " " + c.name;
      row.insertCell().textContent = (100 * c.share).toFixed(1) + " %";
      row.className = "class-row";
    }
    const img = document.getElementById("overlay");
    img.onload = () => {
      document.getElementById("result").hidden = false;
      setStatus("Done: " + payload.width + "x" + payload.height + ", " + payload.classes.length + " classes.", false);
    };
    img.src = payload.overlay;
  } catch (e) {
    setStatus("Error: " + e, true);
  }
}

document.getElementById("file").addEventListener("change", (event) => {
  if (event.target.files.length) upload(event.target.files[0]);
});

// #upload=<url>: fetch that image and upload it as if chosen in the file box (used by the tests).
const match = location.hash.match(/^#upload=(.+)$/);
if (match) {
  fetch(decodeURIComponent(match[1])).then((r) => r.blob()).then(upload)
    .catch((e) => setStatus("Error: " + e, true));
}
</script>
</body>
</html>
"""
