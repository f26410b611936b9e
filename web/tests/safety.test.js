import { describe, expect, it, vi } from 'vitest'
import { createClient, retryAfterSeconds } from '../src/api.js'
import {
  exportFileName, exportSummary, refusalText, reportReason, suspendedByAudit, takenDownByAudit, waitText,
} from '../src/safety.js'

function memoryStorage() {
  const data = new Map()
  return { getItem: (k) => (data.has(k) ? data.get(k) : null), setItem: (k, v) => data.set(k, String(v)),
    removeItem: (k) => data.delete(k) }
}

function answer(status, body, headers = {}) {
  return Promise.resolve({ ok: status >= 200 && status < 300, status, headers: new Headers(headers),
    text: () => Promise.resolve(body === undefined ? '' : JSON.stringify(body)) })
}

function client(responses) {
  const calls = []
  const fetch = vi.fn((url, init) => { calls.push({ url, ...init }); return responses.shift()() })
  const storage = memoryStorage()
  storage.setItem('quanzi.token', 'old-token')
  const onUnauthorized = vi.fn()
  return { api: createClient({ fetch, storage, onUnauthorized }), calls, storage, onUnauthorized }
}

describe('the account calls of the API client', () => {
  it('changing the password keeps this device signed in with the new token', async () => {
    const { api, calls, storage } = client([() => answer(200, { access_token: 'new-token', token_type: 'bearer' })])
    await api.changePassword('old-secret', 'new-secret-1')
    expect(calls[0].url).toBe('/api/v1/auth/password')
    expect(JSON.parse(calls[0].body)).toEqual({ old_password: 'old-secret', new_password: 'new-secret-1' })
    expect(storage.getItem('quanzi.token')).toBe('new-token')
  })

  it('a password typed wrong (a 401 naming the field) keeps the session; a refused token ends it', async () => {
    const { api, storage, onUnauthorized } = client([
      () => answer(401, { error: { code: 'unauthorized', message: 'wrong password',
        fields: { old_password: ['does not match your current password'] } } }),
      () => answer(401, { error: { code: 'unauthorized', message: 'this session has ended; sign in again' } })])
    const wrong = await api.changePassword('nope', 'new-secret-1').catch((e) => e)
    expect(wrong.field('old_password')).toBe('does not match your current password')
    expect(storage.getItem('quanzi.token')).toBe('old-token')
    expect(onUnauthorized).not.toHaveBeenCalled()
    await api.me().catch((e) => e)
    expect(storage.getItem('quanzi.token')).toBeNull()
    expect(onUnauthorized).toHaveBeenCalledOnce()
  })

  it('deleting the account sends the password in the DELETE body and forgets the token', async () => {
    const { api, calls, storage } = client([() => answer(204)])
    await api.deleteAccount('my-secret-1')
    expect(calls[0].method).toBe('DELETE')
    expect(calls[0].url).toBe('/api/v1/me')
    expect(JSON.parse(calls[0].body)).toEqual({ password: 'my-secret-1' })
    expect(storage.getItem('quanzi.token')).toBeNull()
  })

  it('reads Retry-After into the error (a throttled login says how long to wait)', async () => {
    const { api } = client([() => answer(429, { error: { code: 'rate_limited', message: 'too many requests; retry after 75 s' } },
      { 'Retry-After': '75' })])
    const error = await api.login('13800000000', 'x').catch((e) => e)
    expect(error.status).toBe(429)
    expect(error.retryAfter).toBe(75)
    expect(refusalText(error)).toBe('尝试次数过多，请1分15秒后再试')
    expect(retryAfterSeconds(null)).toBeNull()
    expect(retryAfterSeconds('soon')).toBeNull()
    expect(retryAfterSeconds(' 30 ')).toBe(30)
  })

  it('reports and the admin\'s decisions go to their paths with the reason', async () => {
    const { api, calls } = client([() => answer(201, {}), () => answer(201, {}), () => answer(200, {}),
      () => answer(200, {}), () => answer(200, { items: [] })])
    await api.reportMoment('mom_1', '广告或营销')
    await api.reportComment('cmt_1', '骚扰')
    await api.takeDownMoment('mom_1', '广告')
    await api.suspendUser('usr_1', '刷单')
    await api.audit({ target_id: 'usr_1', actor_id: '', cursor: null, limit: 20 })
    expect(calls.map((c) => c.url)).toEqual(['/api/v1/moments/mom_1/reports', '/api/v1/comments/cmt_1/reports',
      '/api/v1/admin/moments/mom_1/takedown', '/api/v1/admin/users/usr_1/suspend',
      '/api/v1/admin/audit?target_id=usr_1&limit=20'])
    expect(JSON.parse(calls[3].body)).toEqual({ reason: '刷单' })
  })
})

describe('what the safety pages show', () => {
  it('says waits in minutes and seconds', () => {
    expect(waitText(30)).toBe('30秒')
    expect(waitText(60)).toBe('1分钟')
    expect(waitText(75)).toBe('1分15秒')
    expect(waitText(0.2)).toBe('1秒')
    expect(refusalText({ status: 429 })).toBe('尝试次数过多，请稍后再试')
    expect(refusalText({ status: 400, message: 'bad input' })).toBe('bad input')
  })

  it('summarises an export by service and collection, leaving out what is empty', () => {
    const data = { user_id: 'usr_9', exported_at: '2026-11-30T08:00:00+00:00', account: { phone: '13800000000' },
      services: [{ service: 'gateway', collections: { users: [{ _id: 'usr_9' }] } },
        { service: 'social_feed', collections: { moments: [{}, {}], likes: [], weird: [{}] } },
        { service: 'orders', collections: { orders: [{}] } }] }
    expect(exportSummary(data)).toEqual([
      { service: 'gateway', collection: 'users', count: 1, label: '账号 · 账号' },
      { service: 'social_feed', collection: 'moments', count: 2, label: '社交 · 朋友圈动态' },
      { service: 'social_feed', collection: 'weird', count: 1, label: '社交 · weird' },
      { service: 'orders', collection: 'orders', count: 1, label: '订单 · 订单' }])
    expect(exportSummary(null)).toEqual([])
    expect(exportFileName(data)).toBe('quanzi-data-usr_9-20261130.json')
    expect(exportFileName({})).toBe('quanzi-data-me.json')
  })

  it('tells a suspension or a takedown from the newest audit entry that decides it', () => {
    const entries = [{ action: 'user.restore' }, { action: 'user.suspend' }]
    expect(suspendedByAudit(entries)).toBe(false)
    expect(suspendedByAudit(entries.slice(1))).toBe(true)
    expect(suspendedByAudit([{ action: 'moment.takedown' }])).toBeNull()
    expect(takenDownByAudit([{ action: 'product.takedown' }, { action: 'product.restore' }])).toBe(true)
    expect(takenDownByAudit([])).toBeNull()
  })

  it('writes a report\'s reason from the choice and the person\'s words', () => {
    expect(reportReason('广告或营销', '')).toBe('广告或营销')
    expect(reportReason('广告或营销', ' 加微信 ')).toBe('广告或营销：加微信')
    expect(reportReason('', '别的原因')).toBe('别的原因')
    expect(reportReason('', '  ')).toBe('')
  })
})
