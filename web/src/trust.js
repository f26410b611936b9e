// What the trust pages show and offer (reviews, merchant ratings, refunds with returns, disputes), as pure functions:
// the pages read a refund's state through these, never by comparing statuses themselves.
import { label, yuan } from './format.js'

// A rating {average, count} as people read it: "4.5 分 · 12 条评价", or that nothing was reviewed yet.
export function ratingText(rating) {
  if (!rating || !rating.count || rating.average === null || rating.average === undefined) return '暂无评价'
  return `${Number(rating.average).toFixed(1)} 分 · ${rating.count} 条评价`
}

// 1..5 as stars for a line of text ("★★★★☆").
export function stars(rating) {
  const n = Math.max(0, Math.min(5, Math.round(Number(rating) || 0)))
  return '★'.repeat(n) + '☆'.repeat(5 - n)
}

export const REFUND_STATUS_TEXT = {
  requested: '待商家处理', awaiting_return: '商家已同意，请寄回商品', returning: '商品寄回中，待商家确认收货',
  processing: '退款中', succeeded: '已退款', rejected: '商家已拒绝', escalated: '已申请平台介入',
  disputed: '平台处理中', closed: '退货已关闭',
}

// The headline of one refund as its buyer reads it on the order: what kind, where it stands, and how much.
export function refundHeadline(refund) {
  const amount = yuan(refund.amount_fen)
  if (refund.kind === 'dispute') {
    if (refund.status === 'disputed') return `平台介入 · 处理中 · 申请 ${amount}`
    if (refund.status === 'rejected') return '平台介入 · 平台驳回'
    if (refund.status === 'succeeded') return `平台介入 · 裁定退款 ${amount}`
    return `平台介入 · 裁定退款 ${amount} · 退款中`
  }
  const kind = refund.kind === 'group_failed' ? '拼团失败' : refund.kind === 'late_payment' ? '重复/逾期付款'
    : refund.return_goods ? '退货退款' : '仅退款'
  return `${kind} · ${label(REFUND_STATUS_TEXT, refund.status)} · ${amount}`
}

// The detail line under the headline: the reason that decided it, the return's tracking, or the buyer's reason.
export function refundDetail(refund) {
  if (refund.kind === 'dispute') {
    const decided = refund.status !== 'disputed' && (refund.decision_reason || refund.reject_reason)
    return decided ? `平台意见：${decided}` : refund.reason || ''
  }
  if (refund.reject_reason && ['rejected', 'escalated'].includes(refund.status)) return `商家拒绝：${refund.reject_reason}`
  if (refund.status === 'closed') return '未在期限内寄回商品，退货已关闭，可在售后期内重新申请'
  if (refund.return_tracking_no) return `退货物流：${refund.return_carrier || ''} ${refund.return_tracking_no}`
  if (refund.auto_approved) return '商家未及时处理，已自动同意'
  return refund.reason || ''
}

// What the buyer can do next with this refund: send the goods back, escalate the rejection, or nothing.
export function buyerAction(refund) {
  if (refund.kind !== 'after_sales') return null
  if (refund.status === 'awaiting_return') return 'ship_back'
  if (refund.status === 'rejected' && !refund.dispute_id) return 'escalate'
  return null
}

// What the order's merchant can do with this refund: decide a request, or confirm (or refuse) returned goods; wait
// for the buyer's parcel, or for the platform's decision on a dispute.
export function merchantAction(refund) {
  if (refund.kind === 'dispute' && refund.status === 'disputed') return 'platform'
  if (refund.kind !== 'after_sales') return null
  if (refund.status === 'requested') return 'decide'
  if (refund.status === 'returning') return 'receive'
  if (refund.status === 'awaiting_return') return 'wait'
  return null
}

// When the timers act on a refund still waiting for someone (as the buyer reads it), or '' when nothing is due.
export function refundDeadline(refund, time) {
  if (refund.status === 'requested' && refund.respond_before) return `商家需在 ${time(refund.respond_before)} 前处理，逾期自动同意`
  if (refund.status === 'awaiting_return' && refund.ship_back_before) {
    return `请在 ${time(refund.ship_back_before)} 前寄回商品，逾期退货关闭`
  }
  if (refund.status === 'returning' && refund.received_by) return `商家需在 ${time(refund.received_by)} 前确认收货，逾期自动退款`
  return ''
}
