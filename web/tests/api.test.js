import { describe, expect, it, vi } from 'vitest'
import { ApiError, createClient, keyPerRequest } from '../src/api.js'
import { entryRoute } from '../src/entry.js'

function memoryStorage() {
  const data = new Map()
  return { getItem: (k) => (data.has(k) ? data.get(k) : null), setItem: (k, v) => data.set(k, String(v)),
    removeItem: (k) => data.delete(k) }
}

function answer(status, body) {
  return Promise.resolve({ ok: status >= 200 && status < 300, status,
    text: () => Promise.resolve(body === undefined ? '' : JSON.stringify(body)) })
}

function client(responses) {
  const calls = []
  const fetch = vi.fn((url, init) => { calls.push({ url, ...init }); return responses.shift()() })
  const storage = memoryStorage()
  const onUnauthorized = vi.fn()
  return { api: createClient({ fetch, storage, onUnauthorized }), calls, storage, onUnauthorized }
}

describe('the API client', () => {
  it('keeps the token from login and sends it as a bearer token', async () => {
    const { api, calls, storage } = client([() => answer(200, { access_token: 'tok1', token_type: 'bearer' }),
      () => answer(200, { user_id: 'usr_1' })])
    await api.login('13800000000', 'secret123')
    expect(storage.getItem('quanzi.token')).toBe('tok1')
    await api.me()
    expect(calls[1].url).toBe('/api/v1/me')
    expect(calls[1].headers.Authorization).toBe('Bearer tok1')
    expect(calls[0].headers.Authorization).toBeUndefined()
  })

  it('puts an Idempotency-Key on every POST, the caller\'s own when retrying, none on GET', async () => {
    const { api, calls } = client([() => answer(201, { order_id: 'ord_1' }), () => answer(201, { order_id: 'ord_1' }),
      () => answer(201, {}), () => answer(200, { items: [] })])
    await api.placeOrder({ items: [] }, 'same-key')
    await api.placeOrder({ items: [] }, 'same-key')
    await api.applyMerchant({ name: 'x' })
    await api.orders({ limit: 5 })
    expect(calls[0].headers['Idempotency-Key']).toBe('same-key')
    expect(calls[1].headers['Idempotency-Key']).toBe('same-key')
    expect(calls[2].headers['Idempotency-Key']).toMatch(/^[0-9a-f]{32}$/)
    expect(calls[3].headers['Idempotency-Key']).toBeUndefined()
    expect(JSON.parse(calls[0].body)).toEqual({ items: [] })
  })

  it('gives a form one key per distinct request: a retry keeps it, a corrected form or the next request does not', () => {
    const keyFor = keyPerRequest()
    const first = keyFor({ amount_fen: 1001 })
    expect(keyFor({ amount_fen: 1001 })).toBe(first)  // a double tap, or a retry after a lost answer
    const corrected = keyFor({ amount_fen: 600 })  // refused, then changed: the server would refuse the old key
    expect(corrected).not.toBe(first)
    keyFor.done()  // it went through: the same amount again is another withdrawal
    expect(keyFor({ amount_fen: 600 })).not.toBe(corrected)
  })

  it('sends a picture as the body itself, typed as the file is, with its purpose', async () => {
    const { api, calls } = client([() => answer(201, { url: '/media/u-1.jpg' })])
    const file = new Blob([new Uint8Array([0xff, 0xd8, 0xff])], { type: 'image/jpeg' })
    expect(await api.uploadPicture(file, 'product')).toEqual({ url: '/media/u-1.jpg' })
    expect(calls[0].url).toBe('/api/v1/media?purpose=product')
    expect(calls[0].body).toBe(file)
    expect(calls[0].headers['Content-Type']).toBe('image/jpeg')
    expect(calls[0].headers['Idempotency-Key']).toMatch(/^[0-9a-f]{32}$/)
  })

  it('builds query strings and escapes path ids: pages never build URLs', async () => {
    const { api, calls } = client([() => answer(200, {}), () => answer(200, {})])
    await api.products({ q: '龙井 茶', category: '', cursor: null, limit: 20 })
    await api.openShare('a/b?c')
    expect(calls[0].url).toBe('/api/v1/products?q=%E9%BE%99%E4%BA%95+%E8%8C%B6&limit=20')
    expect(calls[1].url).toBe('/api/v1/s/a%2Fb%3Fc')
  })

  it('turns an error answer into an ApiError with the API\'s message and field errors', async () => {
    const { api } = client([() => answer(400, { error: { code: 'invalid', message: 'bad input',
      fields: { address: { phone: ['Not a mainland mobile number.'] } } } })])
    const error = await api.placeOrder({}).catch((e) => e)
    expect(error).toBeInstanceOf(ApiError)
    expect(error.status).toBe(400)
    expect(error.message).toBe('bad input')
    expect(error.field('address.phone')).toBe('Not a mainland mobile number.')
    expect(error.field('address.detail')).toBe('')
    expect(error.field('nothing.here')).toBe('')
  })

  it('forgets a token the API refuses and says so; a network failure is a readable error', async () => {
    const { api, storage, onUnauthorized } = client([() => answer(401, { error: { code: 'unauthorized',
      message: 'token expired', fields: {} } }), () => Promise.reject(new TypeError('Failed to fetch'))])
    storage.setItem('quanzi.token', 'old')
    const refused = await api.me().catch((e) => e)
    expect(refused.status).toBe(401)
    expect(storage.getItem('quanzi.token')).toBeNull()
    expect(onUnauthorized).toHaveBeenCalledTimes(1)
    const offline = await api.products().catch((e) => e)
    expect(offline.status).toBe(0)
    expect(offline.message).toBe('网络连接失败，请稍后再试')
  })

  it('signs out at the API and forgets the token, even when the API cannot be reached', async () => {
    const { api, calls, storage } = client([() => answer(204), () => Promise.reject(new TypeError('offline'))])
    storage.setItem('quanzi.token', 't1')
    await api.logout()
    expect(calls[0].url).toBe('/api/v1/auth/logout')
    expect(calls[0].headers.Authorization).toBe('Bearer t1')
    expect(storage.getItem('quanzi.token')).toBeNull()
    storage.setItem('quanzi.token', 't2')
    await api.logout()
    expect(storage.getItem('quanzi.token')).toBeNull()
  })

  it('falls back to a message of its own when the answer is not the API\'s JSON', async () => {
    const { api } = client([() => Promise.resolve({ ok: false, status: 502, text: () => Promise.resolve('<html>') })])
    const error = await api.products().catch((e) => e)
    expect(error.status).toBe(502)
    expect(error.message).toBe('请求失败 (502)')
  })
})

describe('entry paths', () => {
  it('opens the share landing, the consoles, or nothing special', () => {
    expect(entryRoute('/s/aZ3kP9qLm2')).toBe('/share/aZ3kP9qLm2')
    expect(entryRoute('/merchant/')).toBe('/merchant')
    expect(entryRoute('/admin/')).toBe('/admin')
    expect(entryRoute('/')).toBeNull()
    expect(entryRoute('/s/aZ3kP9qLm2', '#/orders')).toBeNull()
  })
})
