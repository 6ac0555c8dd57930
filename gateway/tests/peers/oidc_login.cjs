// Signs in to control with the identity provider in a real headless browser
// (Debian's chromium driven by playwright-core): from control's sign-in
// page, "Sign in with …", the provider's login form (LOGIN, any password),
// its consent, back to the inbox. Prints one JSON line: where the browser
// ended, the user the inbox shows, and the session cookie.
//
// usage: node oidc_login.cjs CONTROL_URL LOGIN
const { chromium } = require('playwright-core');

async function main([url, login]) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${url}/login`);
    await page.click('#sso');
    await page.waitForSelector('input[name=login]');
    await page.fill('input[name=login]', login);
    await page.fill('input[name=password]', 'any');
    await page.click('button[type=submit]');
    // The consent page, the first time.
    const consent = page.locator('button:has-text("Continue")');
    await Promise.race([
      page.waitForURL(/\/inbox/),
      consent.waitFor().then(() => consent.click()),
    ]);
    await page.waitForURL(/\/inbox/);
    await page.waitForSelector('#user');
    const cookies = await context.cookies(url);
    const session = cookies.find((c) => c.name === 'sluice_session');
    console.log(JSON.stringify({
      url: page.url(),
      user: await page.textContent('#user'),
      cookie: session ? `${session.name}=${session.value}` : null,
    }));
  } finally {
    await browser.close();
  }
}

main(process.argv.slice(2)).catch((e) => {
  console.error(e);
  process.exit(1);
});
