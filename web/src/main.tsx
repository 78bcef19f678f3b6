// Entry of the web UI bundle (esbuild -> dist/web/main.js + main.css).
import { render } from "preact";
import { App } from "./app.js";
import "./style.css";

render(<App />, document.getElementById("app")!);
