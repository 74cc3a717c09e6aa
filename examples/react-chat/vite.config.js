// The dev server (`npm run dev`) and the preview of the build (`npm run preview`) both forward
// /api — REST and the Socket.IO websocket — to a craftcode server: CRAFTCODE_URL, default
// http://127.0.0.1:3000. That server must allow this page's origin (CORS_ORIGINS), because the
// browser's Origin header goes through the proxy unchanged.
import { defineConfig } from "vite";

const target = process.env.CRAFTCODE_URL ?? "http://127.0.0.1:3000";
const proxy = { "/api": { target, ws: true } };

export default defineConfig({
  // Vite's esbuild compiles the TSX; React's automatic JSX runtime needs no plugin.
  esbuild: { jsx: "automatic" },
  server: { port: 5173, proxy },
  preview: { port: 4173, proxy },
});
