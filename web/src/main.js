import { createApp } from 'vue'
import { createRouter, createWebHashHistory } from 'vue-router'
import {
  ActionBar, ActionBarButton, ActionBarIcon, Button, Cell, CellGroup, CountDown, Empty, Field, Form, Grid, GridItem,
  Image as VanImage, List, Loading, NavBar, Popup, Radio, RadioGroup, Search, Stepper, Swipe, SwipeItem, Switch, Tab,
  Tabbar, TabbarItem, Tabs, Tag, Uploader,
} from 'vant'
import 'vant/lib/index.css'
import App from './App.vue'
import { entryRoute } from './entry.js'
import { session } from './session.js'
import './app.css'

const page = (name) => () => import(`./pages/${name}.vue`)
const routes = [
  { path: '/', component: page('Home'), meta: { tab: true } },
  { path: '/p/:id', component: page('Product') },
  { path: '/share/:code', component: page('Share') },
  { path: '/checkout', component: page('Checkout'), meta: { auth: true } },
  { path: '/orders', component: page('Orders'), meta: { auth: true, tab: true } },
  { path: '/orders/:id', component: page('OrderDetail'), meta: { auth: true } },
  { path: '/group/:id', component: page('Group') },
  { path: '/moments', component: page('Moments'), meta: { auth: true, tab: true } },
  { path: '/friends', component: page('Friends'), meta: { auth: true } },
  { path: '/wallet', component: page('Wallet'), meta: { auth: true } },
  { path: '/me', component: page('Me'), meta: { auth: true, tab: true } },
  { path: '/login', component: page('Login') },
  { path: '/merchant', component: page('Merchant'), meta: { auth: true } },
  { path: '/admin', component: page('Admin'), meta: { auth: true } },
  { path: '/:rest(.*)*', redirect: '/' },
]

// /s/{code}, /merchant/ and /admin/ are served the same page: they open at their own route.
const start = entryRoute(window.location.pathname, window.location.hash)
if (start) window.history.replaceState(null, '', `${window.location.pathname}#${start}`)

const router = createRouter({ history: createWebHashHistory(), routes })
router.beforeEach((to) => {
  if (to.meta.auth && !session.signedIn()) return { path: '/login', query: { redirect: to.fullPath } }
  return true
})
window.addEventListener('quanzi:signed-out', () => {
  session.forget()
  router.push({ path: '/login', query: { redirect: router.currentRoute.value.fullPath } })
})

const app = createApp(App)
for (const component of [ActionBar, ActionBarButton, ActionBarIcon, Button, Cell, CellGroup, CountDown, Empty,
  Field, Form, Grid, GridItem, VanImage, List, Loading, NavBar, Popup, Radio, RadioGroup, Search, Stepper, Swipe,
  SwipeItem, Switch, Tab, Tabbar, TabbarItem, Tabs, Tag, Uploader]) {
  app.use(component)
}
app.use(router).mount('#app')
