// actor_handoff: a caller hands each durable append to worker threads and waits, as with shard actors (see README.md).
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sched.h>
static long fs_ns; static int pin;
static void pinto(int c){cpu_set_t s;CPU_ZERO(&s);CPU_SET(c,&s);sched_setaffinity(0,sizeof s,&s);}
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e6+t.tv_nsec/1e3;}
struct W{int id; pthread_mutex_t m; pthread_cond_t cv,cv2; int req,done,fd; off_t off; int n;};
static char rec[130];
static void* worker(void*a){ struct W*w=a; if(pin==1) pinto(1); if(pin==2) pinto(w->id); for(int i=0;i<w->n;i++){ pthread_mutex_lock(&w->m); while(!w->req) pthread_cond_wait(&w->cv,&w->m); w->req=0; pthread_mutex_unlock(&w->m);
  pwrite(w->fd,rec,sizeof rec,w->off); w->off+=sizeof rec; {double a=now(); fdatasync(w->fd); __atomic_fetch_add((long*)&fs_ns,(long)((now()-a)*1000),__ATOMIC_RELAXED);}
  pthread_mutex_lock(&w->m); w->done=1; pthread_cond_signal(&w->cv2); pthread_mutex_unlock(&w->m);} return 0;}
int main(int argc,char**argv){ int n=atoi(argv[1]); int k=atoi(argv[2]); pin=argc>4?atoi(argv[4]):0; if(pin==1) pinto(0); memset(rec,'x',sizeof rec);
  struct W w[4]; pthread_t t[4];
  for(int j=0;j<k;j++){ char path[256]; snprintf(path,256,"%s/h%d",argv[3],j); unlink(path);
    memset(&w[j],0,sizeof w[j]); pthread_mutex_init(&w[j].m,0); pthread_cond_init(&w[j].cv,0); pthread_cond_init(&w[j].cv2,0);
    w[j].fd=open(path,O_RDWR|O_CREAT|O_TRUNC,0644); posix_fallocate(w[j].fd,0,64<<20); fdatasync(w[j].fd); w[j].n=n/k; w[j].id=j; pthread_create(&t[j],0,worker,&w[j]); }
  double t0=now();
  for(int i=0;i<n;i++){ struct W*x=&w[i%k]; pthread_mutex_lock(&x->m); x->req=1; pthread_cond_signal(&x->cv); pthread_mutex_unlock(&x->m);
    pthread_mutex_lock(&x->m); while(!x->done) pthread_cond_wait(&x->cv2,&x->m); x->done=0; pthread_mutex_unlock(&x->m); }
  double dt=now()-t0; for(int j=0;j<k;j++) pthread_join(t[j],0); printf("handoff workers=%d pin=%d %.1f us/append, fdatasync %.1f us\n",k,pin,dt/n,fs_ns/1000.0/n); return 0;}
