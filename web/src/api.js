// The one client of the public API (/api/v1). Pages call the named functions below; they never build URLs, set
// headers or read error bodies themselves.
//  - the bearer token lives in localStorage (key quanzi.token) and goes on every request;
//  - every POST carries an Idempotency-Key (a caller retrying the same action passes the same key);
//  - any non-2xx answer becomes an ApiError with the API's error.message and per-field messages.

export class ApiError extends Error {
  constructor(status, code, message, fields = {}) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.code = code
    this.fields = fields || {}
  }

  // The first message for one form field ("address.phone" reads nested field errors).
  field(name) {
    let at = this.fields
    for (const part of name.split('.')) at = at && !Array.isArray(at) && typeof at === 'object' ? at[part] : undefined
    if (Array.isArray(at)) return String(at[0])
    if (typeof at === 'string') return at
    return ''
  }
}

const MESSAGES = {
  0: '网络连接失败，请稍后再试',
  401: '请先登录',
  413: '内容太大了',
  429: '操作太频繁，请稍后再试',
}

export function newKey() {
  const bytes = new Uint8Array(16)
  globalThis.crypto.getRandomValues(bytes)
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')
}

// Idempotency-Keys for a form: the same request again (a double tap, a retry after a lost answer) gets the same
// key, so the server acts once and answers it again; a changed request (the person corrected the form) gets a new
// key, since the server refuses a key reused with another body. Call it with the request's body each time, and
// `.done()` once it succeeded: the next one, even with the same body, is a new request (another withdrawal).
export function keyPerRequest() {
  let body = null
  let key = null
  const keyFor = (request) => {
    const text = JSON.stringify(request)
    if (text !== body) {
      body = text
      key = newKey()
    }
    return key
  }
  keyFor.done = () => { body = null }
  return keyFor
}

export function createClient({ base = '/api/v1', fetch = (...a) => globalThis.fetch(...a),
  storage = globalThis.localStorage, onUnauthorized = () => {} } = {}) {
  const TOKEN = 'quanzi.token'

  function query(params) {
    const entries = Object.entries(params || {}).filter(([, v]) => v !== undefined && v !== null && v !== '')
    return entries.length ? `?${new URLSearchParams(entries).toString()}` : ''
  }

  function path(strings, ...ids) {
    return strings.reduce((out, s, i) => out + s + (i < ids.length ? encodeURIComponent(ids[i]) : ''), '')
  }

  // `file`: a Blob/File sent as the body itself, typed as it is (an upload); otherwise `body` goes as JSON.
  async function request(method, url, { body, params, key, file } = {}) {
    const headers = { Accept: 'application/json' }
    const token = storage?.getItem(TOKEN)
    if (token) headers.Authorization = `Bearer ${token}`
    if (file !== undefined) headers['Content-Type'] = file.type || 'application/octet-stream'
    else if (body !== undefined) headers['Content-Type'] = 'application/json'
    if (method === 'POST') headers['Idempotency-Key'] = key || newKey()
    let response
    try {
      response = await fetch(base + url + query(params), {
        method, headers, body: file !== undefined ? file : body === undefined ? undefined : JSON.stringify(body),
      })
    } catch (error) {
      throw new ApiError(0, 'network', MESSAGES[0])
    }
    const text = await response.text()
    let data = null
    if (text) {
      try { data = JSON.parse(text) } catch { data = null }
    }
    if (response.ok) return data
    const error = data && data.error ? data.error : {}
    if (response.status === 401 && token) {
      storage?.removeItem(TOKEN)
      onUnauthorized()
    }
    throw new ApiError(response.status, error.code || 'http_error',
      error.message || MESSAGES[response.status] || `请求失败 (${response.status})`, error.fields)
  }

  const get = (url, params) => request('GET', url, { params })
  const post = (url, body, key) => request('POST', url, { body, key })
  const patch = (url, body) => request('PATCH', url, { body })
  const del = (url) => request('DELETE', url)

  return {
    request,
    get token() { return storage?.getItem(TOKEN) || null },
    signedIn() { return Boolean(storage?.getItem(TOKEN)) },
    async login(phone, password) {
      const answer = await post('/auth/login', { phone, password })
      storage?.setItem(TOKEN, answer.access_token)
      return answer
    },
    register: (data) => post('/auth/register', data),
    // Signing out ends the token at the API too (it stops working at once); the token is forgotten either way.
    async logout() {
      try {
        if (storage?.getItem(TOKEN)) await post('/auth/logout')
      } catch { /* already invalid, or offline: forgetting it here is what matters */ } finally {
        storage?.removeItem(TOKEN)
      }
    },
    forget() { storage?.removeItem(TOKEN) },
    me: () => get('/me'),
    overview: () => get('/me/overview'),
    profile: () => get('/profile'),
    updateProfile: (data) => patch('/profile', data),
    privacy: () => get('/me/privacy'),
    setPrivacy: (data) => patch('/me/privacy', data),
    user: (id) => get(path`/users/${id}`),
    // a picture from the phone (a File): answers {url, ...}; the url goes into a moment's or product's images
    uploadPicture: (file, purpose = 'moment') => request('POST', '/media', { file, params: { purpose } }),
    // catalog
    products: (params) => get('/products', params),
    product: (id) => get(path`/products/${id}`),
    createProduct: (data, key) => post('/products', data, key),
    applyMerchant: (data) => post('/merchants', data),
    // shares
    openShare: (code) => get(path`/s/${code}`),
    share: (productId, channel = 'link') => post('/shares', { product_id: productId, channel }),
    // orders
    orders: (params) => get('/orders', params),
    order: (id) => get(path`/orders/${id}`),
    placeOrder: (data, key) => post('/orders', data, key),
    pay: (id, key) => post(path`/orders/${id}/pay`, undefined, key),
    cancel: (id) => post(path`/orders/${id}/cancel`),
    ship: (id, data) => post(path`/orders/${id}/ship`, data),
    confirmReceipt: (id) => post(path`/orders/${id}/confirm-receipt`),
    requestRefund: (id, data) => post(path`/orders/${id}/refunds`, data),
    approveRefund: (id) => post(path`/refunds/${id}/approve`),
    rejectRefund: (id, reason) => post(path`/refunds/${id}/reject`, { reason }),
    openGroup: (data, key) => post('/group-buys', data, key),
    joinGroup: (id, data, key) => post(path`/group-buys/${id}/join`, data, key),
    group: (id) => get(path`/group-buys/${id}`),
    // social
    timeline: (params) => get('/timeline', params),
    moment: (id) => get(path`/moments/${id}`),
    postMoment: (data) => post('/moments', data),
    like: (id) => post(path`/moments/${id}/likes`),
    unlike: (id) => del(path`/moments/${id}/likes`),
    comment: (id, text) => post(path`/moments/${id}/comments`, { text }),
    friends: (params) => get('/friends', params),
    friendRequests: (params) => get('/friends/requests', params),
    requestFriend: (userId) => post('/friends/requests', { user_id: userId }),
    acceptFriend: (id) => post(path`/friends/requests/${id}/accept`),
    declineFriend: (id) => post(path`/friends/requests/${id}/decline`),
    // commissions
    commissionSummary: () => get('/commissions/summary'),
    ledger: (params) => get('/commissions/ledger', params),
    withdrawals: (params) => get('/commissions/withdrawals', params),
    withdraw: (amountFen, key) => post('/commissions/withdrawals', { amount_fen: amountFen }, key),
    // admin
    merchants: (params) => get('/admin/merchants', params),
    reviewMerchant: (id, action, reason) =>
      post(path`/admin/merchants/${id}/${action}`, action === 'approve' ? undefined : { reason }),
  }
}

export const api = createClient({
  onUnauthorized: () => globalThis.dispatchEvent?.(new Event('quanzi:signed-out')),
})
