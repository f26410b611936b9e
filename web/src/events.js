// The AsyncAPI document (/asyncapi.json) for people: every channel (exchange + routing key), its message, what the
// message means, its data fields and a golden example. Plain DOM: no framework needed for one list.
import './events.css'

const root = document.getElementById('events')

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag)
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value)
  for (const child of children) node.append(child)
  return node
}

function resolve(doc, schema) {
  if (schema && schema.$ref) return schema.$ref.split('/').slice(1).reduce((at, key) => at?.[key], doc)
  return schema
}

function fieldsOf(doc, schema) {
  const resolved = resolve(doc, schema) || {}
  const required = new Set(resolved.required || [])
  return Object.entries(resolved.properties || {}).map(([name, prop]) => {
    const p = resolve(doc, prop) || {}
    const type = Array.isArray(p.type) ? p.type.join(' | ') : p.type || (p.$ref ? 'object' : '')
    return el('li', {}, el('code', {}, name), ` ${type}${required.has(name) ? '' : ' (optional)'}`,
      p.description ? ` — ${p.description}` : '')
  })
}

export function render(doc) {
  root.replaceChildren()
  root.append(el('h1', {}, doc.info?.title || 'Events'), el('p', {}, doc.info?.description || ''),
    el('p', {}, el('a', { href: '/docs' }, '← HTTP API (Swagger UI)'), ' · ',
      el('a', { href: '/asyncapi.json' }, 'asyncapi.json')))
  const channels = Object.entries(doc.channels || {})
  root.append(el('p', { class: 'count' }, `${channels.length} channels`))
  const list = el('ul', { class: 'channels' })
  for (const [id, channel] of channels) {
    const exchange = channel.bindings?.amqp?.exchange?.name || ''
    for (const ref of Object.values(channel.messages || {})) {
      const message = resolve(doc, ref) || {}
      const payload = resolve(doc, message.payload) || {}
      const example = message.examples?.[0]?.payload
      const item = el('li', { class: 'message', id },
        el('h2', {}, message.name || id),
        el('p', { class: 'where' }, `exchange `, el('code', {}, exchange), ` · routing key `,
          el('code', {}, channel.address || '')),
        el('p', {}, message.summary || message.description || ''),
        el('h3', {}, 'data'), el('ul', {}, ...fieldsOf(doc, payload.properties?.data)))
      if (example) item.append(el('details', {}, el('summary', {}, 'example'),
        el('pre', {}, JSON.stringify(example, null, 2))))
      list.append(item)
    }
  }
  root.append(list)
}

fetch('/asyncapi.json').then((r) => r.json()).then(render).catch((error) => {
  root.replaceChildren(el('p', {}, `Could not load /asyncapi.json: ${error}`))
})
