import { describe, expect, it } from 'vitest'
import { ago, label, msUntil, ORDER_STATUS, time, toFen, uploadedUrls, yuan } from '../src/format.js'

describe('money: fen on the wire, yuan for people', () => {
  it('shows whole fen as yuan with two decimals, never through floats', () => {
    expect(yuan(0)).toBe('¥0.00')
    expect(yuan(5)).toBe('¥0.05')
    expect(yuan(1230)).toBe('¥12.30')
    expect(yuan(9007199254740991)).toBe('¥90071992547409.91')
    expect(yuan(-800)).toBe('-¥8.00')
  })
  it('shows a dash for what is not an amount', () => {
    expect(yuan(null)).toBe('—')
    expect(yuan(undefined)).toBe('—')
    expect(yuan(12.5)).toBe('—')
  })
  it('reads what a person types as fen', () => {
    expect(toFen('12.3')).toBe(1230)
    expect(toFen('0.07')).toBe(7)
    expect(toFen(' 39 ')).toBe(3900)
    expect(toFen('0.1')).toBe(10)
    expect(toFen('1.234')).toBeNull()
    expect(toFen('-1')).toBeNull()
    expect(toFen('abc')).toBeNull()
    expect(toFen('')).toBeNull()
  })
})

describe('time: UTC on the wire, China time for people', () => {
  it('shows an instant in Asia/Shanghai', () => {
    expect(time('2026-11-22T16:30:00+00:00')).toBe('2026-11-23 00:30')
    expect(time('2026-11-22T08:05:00Z')).toBe('2026-11-22 16:05')
  })
  it('shows a dash for nothing or nonsense', () => {
    expect(time(null)).toBe('—')
    expect(time('yesterday')).toBe('—')
  })
  it('counts down to a deadline and never below zero', () => {
    const now = Date.parse('2026-11-22T08:00:00Z')
    expect(msUntil('2026-11-22T09:00:00Z', now)).toBe(3600_000)
    expect(msUntil('2026-11-22T07:00:00Z', now)).toBe(0)
    expect(msUntil('garbage', now)).toBe(0)
  })
  it('says how long ago, in words', () => {
    const now = Date.parse('2026-11-22T08:00:00Z')
    expect(ago('2026-11-22T07:59:30Z', now)).toBe('刚刚')
    expect(ago('2026-11-22T07:55:00Z', now)).toBe('5分钟前')
    expect(ago('2026-11-22T05:00:00Z', now)).toBe('3小时前')
    expect(ago('2026-11-20T08:00:00Z', now)).toBe('2026-11-20 16:00')
  })
  it('names order statuses in Chinese and passes unknown ones through', () => {
    expect(label(ORDER_STATUS, 'awaiting_group')).toBe('待成团')
    expect(label(ORDER_STATUS, 'new_status')).toBe('new_status')
  })
  it('keeps the uploaded pictures\' URLs in the order shown, without failed or unfinished ones', () => {
    expect(uploadedUrls([{ status: 'done', url: '/media/u-a.jpg' }, { status: 'failed', url: undefined },
      { status: 'uploading' }, { status: 'done', url: '/media/u-b.png' }])).toEqual(['/media/u-a.jpg', '/media/u-b.png'])
    expect(uploadedUrls([])).toEqual([])
  })
})
