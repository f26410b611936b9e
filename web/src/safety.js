// What the safety and privacy pages share (pure: no API calls, unit-tested): waits people read, the summary and
// file name of a data export, the admin's action names, and a user's suspension as the audit log tells it.

// 75 -> '1分15秒'; 30 -> '30秒'; 3600 -> '60分钟'.
export function waitText(seconds) {
  const s = Math.max(0, Math.ceil(Number(seconds) || 0))
  if (s < 60) return `${s}秒`
  const minutes = Math.floor(s / 60)
  const rest = s % 60
  return rest ? `${minutes}分${rest}秒` : `${minutes}分钟`
}

// An API refusal as a person reads it: too many attempts says how long to wait (Retry-After), the rest is the
// API's own message.
export function refusalText(error) {
  if (error && error.status === 429) {
    return error.retryAfter ? `尝试次数过多，请${waitText(error.retryAfter)}后再试` : '尝试次数过多，请稍后再试'
  }
  return (error && error.message) || '操作失败，请稍后再试'
}

const COLLECTIONS = {
  users: '账号', profiles: '个人资料', friendships: '好友关系', friend_requests: '好友申请', moments: '朋友圈动态',
  likes: '点赞', comments: '评论', shares: '分享链接', share_clicks: '分享点击', purchases: '购买记录',
  reports: '举报', orders: '订单', refunds: '退款', groups: '拼团', merchants: '店铺', reviews: '评价',
  bindings: '分享关系', inviters: '邀请关系', commissions: '佣金', ledger: '佣金明细', balances: '佣金余额',
  withdrawals: '提现', media: '上传的图片',
}
const SERVICES = { gateway: '账号', catalog: '商品与店铺', orders: '订单', social_feed: '社交', commission: '佣金' }

// GET /me/export -> [{service, collection, label, count}] for every collection that holds something, in the
// export's order (the same collection name under two services is two rows: each service's copy).
export function exportSummary(data) {
  const rows = []
  for (const part of (data && data.services) || []) {
    for (const [collection, docs] of Object.entries(part.collections || {})) {
      if (!Array.isArray(docs) || !docs.length) continue
      rows.push({ service: part.service, collection, count: docs.length,
        label: `${SERVICES[part.service] || part.service} · ${COLLECTIONS[collection] || collection}` })
    }
  }
  return rows
}

// quanzi-data-usr_abc-20261130.json (the export's own date, UTC).
export function exportFileName(data) {
  const day = String((data && data.exported_at) || '').slice(0, 10).replaceAll('-', '')
  return `quanzi-data-${(data && data.user_id) || 'me'}${day ? `-${day}` : ''}.json`
}

export const AUDIT_ACTIONS = {
  'merchant.approve': '通过商家', 'merchant.reject': '拒绝商家', 'merchant.suspend': '暂停商家',
  'product.takedown': '下架商品', 'product.restore': '恢复商品', 'user.suspend': '封禁用户', 'user.restore': '解封用户',
  'moment.takedown': '删除动态', 'comment.takedown': '删除评论', 'moment.reports_dismissed': '驳回动态举报',
  'comment.reports_dismissed': '驳回评论举报', 'refund.approve': '同意退款', 'refund.reject': '拒绝退款',
  'refund.confirm_return': '确认退货', 'dispute.decide': '裁决纠纷', 'review.reply': '回复评价',
}

// Whether a user is suspended, from their audit entries (newest first): the newest suspend/restore decides;
// null when the log has neither (never suspended).
export function suspendedByAudit(entries) {
  for (const entry of entries || []) {
    if (entry.action === 'user.suspend') return true
    if (entry.action === 'user.restore') return false
  }
  return null
}

// Whether a product is taken down, from its audit entries (newest first), as above.
export function takenDownByAudit(entries) {
  for (const entry of entries || []) {
    if (entry.action === 'product.takedown') return true
    if (entry.action === 'product.restore') return false
  }
  return null
}

export const REPORT_REASONS = ['广告或营销', '色情低俗', '诈骗或违法', '骚扰或辱骂', '虚假信息']

// The reason sent with a report: the chosen one, with the person's own words after it.
export function reportReason(choice, details) {
  const words = String(details || '').trim()
  if (!choice) return words
  return words ? `${choice}：${words}` : choice
}
