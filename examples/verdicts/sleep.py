import time
print("start", flush=True)
time.sleep(60)
