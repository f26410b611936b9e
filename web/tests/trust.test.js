import { describe, expect, it } from 'vitest'
import { createClient } from '../src/api.js'
import { buyerAction, merchantAction, ratingText, refundDeadline, refundDetail, refundHeadline, stars } from '../src/trust.js'

const refund = (fields) => ({ kind: 'after_sales', status: 'requested', amount_fen: 5000, return_goods: false, ...fields })

describe('ratings as people read them', () => {
  it('shows the average with one decimal and the count', () => {
    expect(ratingText({ average: 4.5, count: 2 })).toBe('4.5 分 · 2 条评价')
    expect(ratingText({ average: 4.67, count: 3 })).toBe('4.7 分 · 3 条评价')
    expect(ratingText({ average: 5, count: 1 })).toBe('5.0 分 · 1 条评价')
  })
  it('says nothing was reviewed when there is no rating', () => {
    expect(ratingText({ average: null, count: 0 })).toBe('暂无评价')
    expect(ratingText(null)).toBe('暂无评价')
    expect(ratingText(undefined)).toBe('暂无评价')
  })
  it('draws one to five stars and never more', () => {
    expect(stars(4)).toBe('★★★★☆')
    expect(stars(1)).toBe('★☆☆☆☆')
    expect(stars(9)).toBe('★★★★★')
    expect(stars(null)).toBe('☆☆☆☆☆')
  })
})

describe('a refund on its order, for the buyer', () => {
  it('names the kind, the stage and the amount', () => {
    expect(refundHeadline(refund({ return_goods: true, status: 'awaiting_return' })))
      .toBe('退货退款 · 商家已同意，请寄回商品 · ¥50.00')
    expect(refundHeadline(refund({ status: 'succeeded', amount_fen: 1234 }))).toBe('仅退款 · 已退款 · ¥12.34')
    expect(refundHeadline(refund({ kind: 'group_failed', status: 'succeeded' }))).toBe('拼团失败 · 已退款 · ¥50.00')
  })
  it('tells a dispute by what the platform decided', () => {
    expect(refundHeadline(refund({ kind: 'dispute', status: 'disputed' }))).toBe('平台介入 · 处理中 · 申请 ¥50.00')
    expect(refundHeadline(refund({ kind: 'dispute', status: 'processing', amount_fen: 3000 })))
      .toBe('平台介入 · 裁定退款 ¥30.00 · 退款中')
    expect(refundHeadline(refund({ kind: 'dispute', status: 'succeeded', amount_fen: 3000 })))
      .toBe('平台介入 · 裁定退款 ¥30.00')
    expect(refundHeadline(refund({ kind: 'dispute', status: 'rejected' }))).toBe('平台介入 · 平台驳回')
  })
  it('explains with the deciding reason first, then the return tracking, then the buyer reason', () => {
    expect(refundDetail(refund({ status: 'rejected', reject_reason: '商品已拆封', reason: '不想要了' })))
      .toBe('商家拒绝：商品已拆封')
    expect(refundDetail(refund({ status: 'returning', return_carrier: '中通', return_tracking_no: 'ZT1' })))
      .toBe('退货物流：中通 ZT1')
    expect(refundDetail(refund({ status: 'awaiting_return', auto_approved: true }))).toBe('商家未及时处理，已自动同意')
    expect(refundDetail(refund({ reason: '不想要了' }))).toBe('不想要了')
    expect(refundDetail(refund({ kind: 'dispute', status: 'rejected', reject_reason: '证据不足', reason: '坏了' })))
      .toBe('平台意见：证据不足')
    expect(refundDetail(refund({ kind: 'dispute', status: 'succeeded', decision_reason: '部分变质', reason: '坏了' })))
      .toBe('平台意见：部分变质')
    expect(refundDetail(refund({ kind: 'dispute', status: 'disputed', reason: '坏了' }))).toBe('坏了')
  })
  it('says when a closed return ended and when the timers act next', () => {
    const closed = refund({ status: 'closed', return_goods: true, close_reason: 'the goods were not sent back' })
    expect(refundHeadline(closed)).toBe('退货退款 · 退货已关闭 · ¥50.00')
    expect(refundDetail(closed)).toBe('未在期限内寄回商品，退货已关闭，可在售后期内重新申请')
    const at = (iso) => `[${iso}]`
    expect(refundDeadline(refund({ respond_before: 'T1' }), at)).toBe('商家需在 [T1] 前处理，逾期自动同意')
    expect(refundDeadline(refund({ status: 'awaiting_return', ship_back_before: 'T2' }), at))
      .toBe('请在 [T2] 前寄回商品，逾期退货关闭')
    expect(refundDeadline(refund({ status: 'returning', received_by: 'T3' }), at)).toBe('商家需在 [T3] 前确认收货，逾期自动退款')
    expect(refundDeadline(refund({ status: 'succeeded' }), at)).toBe('')
    expect(refundDeadline(refund({ status: 'awaiting_return', ship_back_before: null }), at)).toBe('')
  })
  it('offers the buyer the next step only where the state allows it', () => {
    expect(buyerAction(refund({ status: 'awaiting_return', return_goods: true }))).toBe('ship_back')
    expect(buyerAction(refund({ status: 'rejected' }))).toBe('escalate')
    expect(buyerAction(refund({ status: 'rejected', dispute_id: 'dsp_1' }))).toBeNull()
    expect(buyerAction(refund({ status: 'escalated', dispute_id: 'dsp_1' }))).toBeNull()
    expect(buyerAction(refund({ kind: 'dispute', status: 'rejected' }))).toBeNull()
    for (const status of ['requested', 'returning', 'processing', 'succeeded']) {
      expect(buyerAction(refund({ status }))).toBeNull()
    }
  })
  it('offers the merchant a decision, then the receipt of the goods', () => {
    expect(merchantAction(refund({}))).toBe('decide')
    expect(merchantAction(refund({ status: 'awaiting_return' }))).toBe('wait')
    expect(merchantAction(refund({ status: 'returning' }))).toBe('receive')
    expect(merchantAction(refund({ status: 'succeeded' }))).toBeNull()
    expect(merchantAction(refund({ kind: 'dispute', status: 'disputed' }))).toBe('platform')
    expect(merchantAction(refund({ kind: 'dispute', status: 'succeeded' }))).toBeNull()
  })
})

describe('the trust calls of the API client', () => {
  it('name the public paths with escaped ids, send the bodies and keep the caller\'s key', async () => {
    const calls = []
    const fetch = (url, init) => {
      calls.push({ url, ...init })
      return Promise.resolve({ ok: true, status: 200, text: () => Promise.resolve('{}') })
    }
    const api = createClient({ fetch, storage: null })
    await api.reviews('prd_1', { limit: 5, cursor: 'c/1' })
    await api.merchantProfile('mer 1')
    await api.returnShipment('rfd_1', { carrier: '中通', tracking_no: 'ZT1' }, 'key-1')
    await api.escalate('rfd_1', '坏了')
    await api.decideDispute('dsp_1', { outcome: 'refund', amount_fen: undefined, reason: '部分' }, 'key-2')
    await api.replyToReview('rev_1', '谢谢')
    expect(calls.map((c) => `${c.method} ${c.url}`)).toEqual([
      'GET /api/v1/products/prd_1/reviews?limit=5&cursor=c%2F1', 'GET /api/v1/merchants/mer%201',
      'POST /api/v1/refunds/rfd_1/return-shipment', 'POST /api/v1/refunds/rfd_1/escalate',
      'POST /api/v1/admin/disputes/dsp_1/decide', 'POST /api/v1/reviews/rev_1/reply'])
    expect(calls[2].headers['Idempotency-Key']).toBe('key-1')
    expect(calls[3].headers['Idempotency-Key']).toMatch(/^[0-9a-f]{32}$/)
    expect(JSON.parse(calls[3].body)).toEqual({ reason: '坏了' })
    expect(JSON.parse(calls[4].body)).toEqual({ outcome: 'refund', reason: '部分' })  // no amount: all of it
    expect(calls[4].headers['Idempotency-Key']).toBe('key-2')
    expect(JSON.parse(calls[5].body)).toEqual({ text: '谢谢' })
  })
})
