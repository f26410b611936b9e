// Money is integer fen on the wire; people read yuan. Times are UTC ISO strings; people read China time.

export function yuan(fen) {
  if (fen === null || fen === undefined || !Number.isInteger(fen)) return '—'
  const sign = fen < 0 ? '-' : ''
  const abs = Math.abs(fen)
  return `${sign}¥${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, '0')}`
}

// '12.30' -> 1230 (what a person types into a price field); null when it is not an amount.
export function toFen(text) {
  const match = /^\s*(\d{1,9})(?:\.(\d{1,2}))?\s*$/.exec(String(text ?? ''))
  if (!match) return null
  return Number(match[1]) * 100 + Number((match[2] || '').padEnd(2, '0'))
}

const TIME = new Intl.DateTimeFormat('zh-CN', {
  timeZone: 'Asia/Shanghai', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit',
  hour12: false,
})

export function time(iso) {
  if (!iso) return '—'
  const date = new Date(iso)
  if (Number.isNaN(date.getTime())) return '—'
  const parts = Object.fromEntries(TIME.formatToParts(date).map((p) => [p.type, p.value]))
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour === '24' ? '00' : parts.hour}:${parts.minute}`
}

// Milliseconds left until `iso` (never negative), for Vant's countdown.
export function msUntil(iso, now = Date.now()) {
  const at = new Date(iso).getTime()
  return Number.isNaN(at) ? 0 : Math.max(0, at - now)
}

export function ago(iso, now = Date.now()) {
  const seconds = Math.floor((now - new Date(iso).getTime()) / 1000)
  if (!(seconds >= 0)) return time(iso)
  if (seconds < 60) return '刚刚'
  if (seconds < 3600) return `${Math.floor(seconds / 60)}分钟前`
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}小时前`
  return time(iso)
}

export const ORDER_STATUS = {
  pending_payment: '待付款', paid: '已付款', awaiting_group: '待成团', shipped: '已发货', completed: '已完成',
  cancelled: '已取消', refund_requested: '退款中', refunded: '已退款',
}
export const GROUP_STATUS = { open: '拼团中', formed: '已成团', failed: '拼团失败' }
export const MERCHANT_STATUS = { pending: '待审核', approved: '已通过', rejected: '已拒绝', suspended: '已暂停' }
export const REFUND_STATUS = { requested: '待处理', processing: '退款中', succeeded: '已退款', rejected: '已拒绝' }
export const LEDGER_STATUS = {
  pending: '待结算', frozen: '冻结中', settled: '已结算', reversed: '已冲回', withdrawn: '已提现',
}

export function label(table, key) {
  return table[key] || key || '—'
}

// The URLs of the pictures an uploader holds that made it to the server, in the order shown (failed and
// still-uploading ones are left out).
export function uploadedUrls(items) {
  return items.filter((item) => item.status === 'done' && item.url).map((item) => item.url)
}
