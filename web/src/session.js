// Who is signed in (loaded once from GET /me) and the share link a visitor arrived through.
import { reactive } from 'vue'
import { api } from './api.js'

const SHARE = 'quanzi.share'

export const session = reactive({
  me: null,
  signedIn: () => api.signedIn(),
  async load(force = false) {
    if (!api.signedIn()) return null
    if (!this.me || force) this.me = await api.me()
    return this.me
  },
  forget() { // the API already refused the token
    api.forget()
    this.me = null
  },
  async logout() {
    await api.logout()
    this.me = null
  },
  isAdmin() { return Boolean(this.me && this.me.roles && this.me.roles.includes('admin')) },
  // The share a visitor came through: registration names its sharer as inviter, orders carry it.
  rememberShare(code, productId) {
    globalThis.sessionStorage?.setItem(SHARE, JSON.stringify({ code, product_id: productId }))
  },
  share() {
    try { return JSON.parse(globalThis.sessionStorage?.getItem(SHARE) || 'null') } catch { return null }
  },
})
