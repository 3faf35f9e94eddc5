// One call with each official Node SDK and one with bare fetch, as an app would make them: no proxy or
// CA code of its own. argv[2] tags the calls (X-Tapgate-Customer-Identifier) so the test finds their rows.
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';

const tag = process.argv[2];
const openai = new OpenAI({ apiKey: 'sk-node-openai', maxRetries: 0 });
const chat = await openai.chat.completions.create(
  { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] },
  { headers: { 'x-tapgate-customer-identifier': `${tag}-openai` } });
console.log('openai', chat.choices[0].message.content.length > 0);

const anthropic = new Anthropic({ apiKey: 'sk-ant-node', maxRetries: 0 });
const stream = anthropic.messages.stream(
  { model: 'claude-sonnet-4-5', max_tokens: 50, messages: [{ role: 'user', content: 'hi' }] },
  { headers: { 'x-tapgate-customer-identifier': `${tag}-anthropic` } });
const message = await stream.finalMessage();
console.log('anthropic', message.content[0].text.length > 0);

const response = await fetch('https://api.openai.com/v1/chat/completions', {
  method: 'POST',
  headers: { 'content-type': 'application/json', authorization: 'Bearer sk-node-fetch',
             'x-tapgate-customer-identifier': `${tag}-fetch` },
  body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
});
console.log('fetch', response.status);
