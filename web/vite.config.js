import { resolve } from 'node:path'
import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

// Vant's icon font is inlined as woff2 (data: URL) with a fallback on a CDN (at.alicdn.com): drop the fallback, so
// the pages never name a host of someone else's (every browser we serve reads woff2).
function noCdnFonts() {
  return {
    name: 'quanzi-no-cdn-fonts',
    generateBundle(_options, bundle) {
      for (const file of Object.values(bundle)) {
        if (file.type === 'asset' && file.fileName.endsWith('.css')) {
          file.source = String(file.source).replace(/,\s*url\((?:https?:)?\/\/[^)]*\)\s*format\("[a-z0-9]+"\)/g, '')
        }
      }
    },
  }
}

// Three entry pages: the app (/, /s/..., /merchant/, /admin/), Swagger UI (/docs) and the events list
// (/docs/events). Everything is bundled and served by the gateway: no CDN.
export default defineConfig({
  plugins: [vue(), noCdnFonts()],
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    chunkSizeWarningLimit: 2000,
    rollupOptions: {
      input: {
        index: resolve(import.meta.dirname, 'index.html'),
        docs: resolve(import.meta.dirname, 'docs.html'),
        events: resolve(import.meta.dirname, 'events.html'),
      },
    },
  },
  test: { include: ['tests/**/*.test.js'], environment: 'node' },
})
