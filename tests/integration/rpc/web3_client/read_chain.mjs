// An unmodified ethers v6 JsonRpcProvider reads a chain through the URL it is
// given (Switchboard's JSON-RPC front door) and prints what it read as one
// JSON line. ethers batches its calls by default, so the front door sees
// batches as well as single calls.
//
//   node read_chain.mjs URL ADDRESS
import { JsonRpcProvider } from "ethers";

const [url, address] = process.argv.slice(2);
const provider = new JsonRpcProvider(url);
try {
  const [network, blockNumber, balance] = await Promise.all([
    provider.getNetwork(),
    provider.getBlockNumber(),
    provider.getBalance(address),
  ]);
  console.log(JSON.stringify({
    chainId: network.chainId.toString(),
    blockNumber,
    balance: balance.toString(),
  }));
} finally {
  provider.destroy();
}
