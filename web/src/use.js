// What several pages share: one resource loaded (and, while it may still change, looked at again), and a
// newest-first list read page by page ({items, next_cursor}).
import { onUnmounted, ref } from 'vue'

export function useResource(load, { every = 0, while: keepLooking = () => false } = {}) {
  const data = ref(null)
  const error = ref('')
  async function refresh() {
    try { data.value = await load() } catch (e) { error.value = e.message }
  }
  refresh()
  if (every) {
    const timer = setInterval(() => { if (data.value && keepLooking(data.value)) refresh() }, every)
    onUnmounted(() => clearInterval(timer))
  }
  return { data, error, refresh }
}

export function usePages(fetchPage) {
  const items = ref([])
  const cursor = ref(null)
  const loading = ref(false)
  const finished = ref(false)
  const error = ref('')
  async function more() {
    try {
      const page = await fetchPage(cursor.value)
      items.value.push(...page.items)
      cursor.value = page.next_cursor
      finished.value = !page.next_cursor
      error.value = ''
      return page
    } catch (e) {
      error.value = e.message
      return null
    } finally {
      loading.value = false
    }
  }
  function reset() {
    items.value = []
    cursor.value = null
    finished.value = false
    loading.value = true
    return more()
  }
  return { items, loading, finished, error, more, reset }
}
