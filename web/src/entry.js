// Which route a served entry path opens: /s/{code} -> the share landing, /merchant/ and /admin/ -> the consoles.
// An explicit #/route wins (the person navigated inside the app already).
export function entryRoute(pathname, hash = '') {
  if (hash && hash !== '#' && hash !== '#/') return null
  const share = /^\/s\/([A-Za-z0-9_-]{1,64})\/?$/.exec(pathname)
  if (share) return `/share/${share[1]}`
  if (/^\/merchant\/?$/.test(pathname)) return '/merchant'
  if (/^\/admin\/?$/.test(pathname)) return '/admin'
  return null
}
