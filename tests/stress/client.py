import socket, random, time, sys, threading
fails=[]
def one(i):
  t=time.time()
  try:
    one_(i)
  except Exception as e:
    fails.append((i,'exc',repr(e),time.time()-t))
def one_(i):
    c=socket.create_connection(('127.0.0.1',9300))
    c.sendall(b'POST /count HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n')
    total=0
    for k in range(random.randint(50,400)):
        size=random.choice([1,10,1000,16384,100000])
        data=b'u'*size
        msg=b'%x\r\n'%size+data+b'\r\n'
        # split at random points
        pos=0
        while pos<len(msg):
            step=random.choice([1,7,500,70000,len(msg)])
            c.sendall(msg[pos:pos+step]); pos+=step
            if random.random()<0.02: time.sleep(0.01)
        total+=size
    c.sendall(b'0\r\n\r\n')
    c.settimeout(40)
    resp=b''
    while b'}' not in resp:
        d=c.recv(65536)
        if not d: break
        resp+=d
    if b'"received": %d'%total not in resp and b'"received":%d'%total not in resp:
        fails.append((i,total,resp[:300]))
ts=[threading.Thread(target=one,args=(i,)) for i in range(int(sys.argv[1]))]
t0=time.time()
[t.start() for t in ts];[t.join() for t in ts]
print("fails",len(fails),fails[:3],"time",time.time()-t0)
