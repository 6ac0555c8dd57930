// Decides an approval in the control inbox with a real headless browser
// (Debian's chromium driven by playwright-core): sign in with a token, find
// the request's row, type a reason, press Approve or Deny, and report what
// the inbox showed before and after as JSON lines.
//
// usage: node inbox.cjs CONTROL_URL TOKEN APPROVAL_ID approve|deny REASON
const { chromium } = require('playwright-core');

async function main([url, token, id, decision, reason]) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    await page.goto(`${url}/inbox`);
    // Not signed in: the inbox sends us to the sign-in page.
    await page.waitForSelector('#token');
    await page.fill('#token', token);
    await page.click('#signin');
    await page.waitForSelector('#user');
    const row = page.locator(`#a-${id}`);
    await row.waitFor();
    console.log(JSON.stringify({
      page: 'pending',
      user: await page.textContent('#user'),
      state: await row.getAttribute('data-state'),
      text: await row.innerText(),
    }));
    await row.locator('input[name=reason]').fill(reason);
    await row.locator(`button[value=${decision}]`).click();
    const done = page.locator(`#a-${id}`);
    await page.waitForURL(new RegExp(`/inbox/${id}$`));
    await done.waitFor();
    console.log(JSON.stringify({
      page: 'decided',
      state: await done.getAttribute('data-state'),
      text: await done.innerText(),
    }));
  } finally {
    await browser.close();
  }
}

main(process.argv.slice(2)).catch((e) => {
  console.error(e);
  process.exit(1);
});
