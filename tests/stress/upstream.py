import socket, threading, time, random, sys
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR,1); s.bind(('127.0.0.1',9301)); s.listen(100)
def handle(c):
    f=c.makefile('rb')
    while True:
        line=f.readline()
        if not line: return
        headers={}
        while True:
            h=f.readline()
            if h in (b'\r\n',b''): break
            k,v=h.split(b':',1); headers[k.strip().lower()]=v.strip()
        n=0
        if headers.get(b'transfer-encoding')==b'chunked':
            while True:
                size=int(f.readline().split(b';')[0],16)
                if size==0:
                    while f.readline() not in (b'\r\n',b''): pass
                    break
                while size>0:
                    if random.random()<0.01: time.sleep(0.05)
                    d=f.read(min(size,random.choice([100,4096,65536]))); size-=len(d); n+=len(d)
                f.read(2)
        elif b'content-length' in headers:
            n=len(f.read(int(headers[b'content-length'])))
        body=('{"received": %d}'%n).encode()
        c.sendall(b'HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n'%len(body)+body)
while True:
    c,_=s.accept(); threading.Thread(target=handle,args=(c,),daemon=True).start()
