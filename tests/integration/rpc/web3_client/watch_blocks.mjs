// An unmodified ethers v6 WebSocketProvider watches new blocks through the
// URL it is given (Switchboard's JSON-RPC front door over WebSocket): it
// subscribes with eth_subscribe ["newHeads"], and prints each block number
// it is told of, one per line, until it has COUNT of them.
//
//   node watch_blocks.mjs URL COUNT
import { WebSocketProvider } from "ethers";

const [url, count] = process.argv.slice(2);
const provider = new WebSocketProvider(url);
let seen = 0;
await new Promise((resolve, reject) => {
  provider.on("error", reject);
  provider.on("block", (number) => {
    console.log(number);
    if (++seen === Number(count)) resolve();
  });
});
await provider.destroy();
