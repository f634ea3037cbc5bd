import asyncio, cProfile, pstats, sys
sys.argv=['x']
import client
async def run():
    await client.with_httpx()
cProfile.run('asyncio.run(run())', '/tmp/mb/prof.out')
p = pstats.Stats('/tmp/mb/prof.out'); p.sort_stats('tottime').print_stats(25)
